//! The node's persistent identity: which cluster it belongs to and its store id.
//!
//! Owns `<data-dir>/IDENTITY`. Invariant: once written, the identity of a
//! data directory never changes (a node restarted on its directory is the
//! same store of the same cluster). Until the Placement Driver (#4) assigns
//! ids, a new directory creates a fresh cluster id and store id 1.

use golem_wire::{ClusterId, StoreId};
use std::io::Write;
use std::path::Path;

/// Cluster and store ids of this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    pub cluster: ClusterId,
    pub store: StoreId,
}

const FILE: &str = "IDENTITY";

impl Identity {
    /// Reads the identity of `dir`, creating (and fsyncing) a new one if absent.
    pub fn load_or_create(dir: &Path) -> std::io::Result<Identity> {
        let path = dir.join(FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Identity::parse(&text).ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is corrupt: {text:?}", path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = Identity {
                    cluster: ClusterId(random_nonzero_u64()),
                    store: StoreId(1),
                };
                let tmp = dir.join(format!("{FILE}.tmp"));
                let mut f = std::fs::File::create(&tmp)?;
                write!(f, "cluster={}\nstore={}\n", id.cluster, id.store)?;
                f.sync_all()?;
                std::fs::rename(&tmp, &path)?;
                std::fs::File::open(dir)?.sync_all()?;
                Ok(id)
            }
            Err(e) => Err(e),
        }
    }

    fn parse(text: &str) -> Option<Identity> {
        let mut cluster = None;
        let mut store = None;
        for line in text.lines() {
            match line.split_once('=') {
                Some(("cluster", v)) => cluster = v.trim().parse().ok(),
                Some(("store", v)) => store = v.trim().parse().ok(),
                _ => {}
            }
        }
        match (cluster, store) {
            (Some(c), Some(s)) if c != 0 && s != 0 => Some(Identity {
                cluster: ClusterId(c),
                store: StoreId(s),
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
    fn corrupt_identity_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), "garbage").unwrap();
        assert!(Identity::load_or_create(dir.path()).is_err());
    }
}
