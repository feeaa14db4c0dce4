//! The node's persistent identity: which cluster it belongs to, its store
//! id, and the region it hosts.
//!
//! Owns `<data-dir>/IDENTITY` (`key=value` lines: `cluster`, `store`,
//! `mode` = `standalone` | `pd`, and in PD mode `region` and `peer` when the
//! node holds a peer of the cluster's first region) and `<data-dir>/JOINING`
//! (`store=<id>`: the store id the PD handed out to a directory that has
//! not finished joining, so that a node stopped while it waits for the
//! cluster to form comes back as the same store). Invariants: once written,
//! the cluster and store of a data directory never change (a node restarted
//! on its directory is the same store of the same cluster); a directory
//! created in one mode is never started in the other; `JOINING` is written
//! (fsync) before the store id is used and only matters while there is no
//! `IDENTITY`. Stand-alone, a new directory gets a fresh random cluster id,
//! store 1 and region 1 / peer 1; with a PD (`--pd`) every id comes from
//! the PD (`node/pd_link.rs`).

use golem_wire::{ClusterId, PeerId, RegionId, StoreId};
use std::io::Write;
use std::path::Path;

/// The region this node hosts and its peer id in that region's Raft group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostedRegion {
    pub region: RegionId,
    pub peer: PeerId,
}

/// The stand-alone node's region: the whole key space, id 1, peer 1.
pub const STANDALONE_REGION: HostedRegion = HostedRegion {
    region: RegionId(1),
    peer: PeerId(1),
};

/// The store id of a directory still joining the PD's cluster.
const JOINING_FILE: &str = "JOINING";

/// Writes `text` to `dir/name` durably: temporary file, fsync, rename,
/// fsync of the directory.
fn write_durably(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(name))?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// The store id a directory got from the PD before it finished joining.
pub fn load_joining(dir: &Path) -> std::io::Result<Option<StoreId>> {
    let path = dir.join(JOINING_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("store="))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&v| v != 0)
            .map(|v| Some(StoreId(v)))
            .ok_or_else(|| invalid(format!("{} is corrupt: {text:?}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Records (durably) the store id a joining directory got from the PD.
pub fn save_joining(dir: &Path, store: StoreId) -> std::io::Result<()> {
    write_durably(dir, JOINING_FILE, &format!("store={store}\n"))
}

/// Forgets the joining store id (once `IDENTITY` holds it).
pub fn remove_joining(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(dir.join(JOINING_FILE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Cluster and store ids of this node, and what it hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster: ClusterId,
    pub store: StoreId,
    /// Whether the ids came from a Placement Driver.
    pub pd: bool,
    /// The region this node hosts, if any: stand-alone, its one region;
    /// with a PD, its peer of the cluster's first region if the PD placed
    /// one here when it bootstrapped the cluster (a node that joined later
    /// hosts none until the PD moves one here).
    pub region: Option<HostedRegion>,
}

const FILE: &str = "IDENTITY";

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

impl Identity {
    /// Reads the identity of `dir`, if it has one.
    pub fn load(dir: &Path) -> std::io::Result<Option<Identity>> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Identity::parse(&text)
                .map(Some)
                .ok_or_else(|| invalid(format!("{} is corrupt: {text:?}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the identity of `dir` (temporary file, fsync, rename, fsync of
    /// the directory).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let mode = if self.pd { "pd" } else { "standalone" };
        let mut text = format!(
            "cluster={}\nstore={}\nmode={mode}\n",
            self.cluster, self.store
        );
        if let Some(h) = self.region {
            text += &format!("region={}\npeer={}\n", h.region, h.peer);
        }
        write_durably(dir, FILE, &text)
    }

    /// The stand-alone identity of `dir`, creating (and fsyncing) a new one
    /// if absent. Refuses a directory that belongs to a PD cluster.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Identity> {
        match Identity::load(dir)? {
            Some(id) if id.pd => Err(invalid(format!(
                "{} belongs to cluster {} managed by a PD: start the node with --pd",
                dir.display(),
                id.cluster
            ))),
            Some(id) => Ok(Identity {
                region: Some(STANDALONE_REGION),
                ..id
            }),
            None => {
                let id = Identity {
                    cluster: ClusterId(random_nonzero_u64()),
                    store: StoreId(1),
                    pd: false,
                    region: Some(STANDALONE_REGION),
                };
                id.save(dir)?;
                Ok(id)
            }
        }
    }

    fn parse(text: &str) -> Option<Identity> {
        let mut cluster = None;
        let mut store = None;
        let mut pd = false;
        let mut region = None;
        let mut peer = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("cluster", v)) => cluster = v.trim().parse().ok(),
                Some(("store", v)) => store = v.trim().parse().ok(),
                Some(("mode", v)) => match v.trim() {
                    "pd" => pd = true,
                    "standalone" => pd = false,
                    _ => return None,
                },
                Some(("region", v)) => region = Some(v.trim().parse().ok()?),
                Some(("peer", v)) => peer = Some(v.trim().parse().ok()?),
                _ => {}
            }
        }
        let region = match (region, peer) {
            (Some(r), Some(p)) if r != 0 && p != 0 => Some(HostedRegion {
                region: RegionId(r),
                peer: PeerId(p),
            }),
            (None, None) => None,
            _ => return None,
        };
        match (cluster, store) {
            (Some(c), Some(s)) if c != 0 && s != 0 => Some(Identity {
                cluster: ClusterId(c),
                store: StoreId(s),
                pd,
                region,
            }),
            _ => None,
        }
    }
}

/// A random non-zero u64 from the standard library's per-process random hasher keys.
fn random_nonzero_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    loop {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        let v = h.finish();
        if v != 0 {
            return v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_stable_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let a = Identity::load_or_create(dir.path()).unwrap();
        let b = Identity::load_or_create(dir.path()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.cluster.get(), 0);
    }

    #[test]
    fn pd_identity_round_trips_and_is_refused_stand_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), None);
        let id = Identity {
            cluster: ClusterId(7),
            store: StoreId(3),
            pd: true,
            region: Some(HostedRegion {
                region: RegionId(5),
                peer: PeerId(6),
            }),
        };
        id.save(dir.path()).unwrap();
        assert_eq!(Identity::load(dir.path()).unwrap(), Some(id));
        assert!(Identity::load_or_create(dir.path()).is_err());
    }

    #[test]
    fn joining_store_id_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_joining(dir.path()).unwrap(), None);
        save_joining(dir.path(), StoreId(12)).unwrap();
        assert_eq!(load_joining(dir.path()).unwrap(), Some(StoreId(12)));
        remove_joining(dir.path()).unwrap();
        remove_joining(dir.path()).unwrap(); // already gone: fine
        assert_eq!(load_joining(dir.path()).unwrap(), None);
        std::fs::write(dir.path().join(JOINING_FILE), "store=0\n").unwrap();
        assert!(load_joining(dir.path()).is_err());
    }

    #[test]
    fn corrupt_identity_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert!(Identity::load_or_create(dir.path()).is_err());
    }
}
