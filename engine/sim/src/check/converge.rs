//! Replicas converge: once faults stop and the cluster is quiet, every
//! replica of a region holds the same data in the region's key range and
//! has applied the same index.
//!
//! Owns the comparison only; the simulator decides when the cluster is
//! quiet and extracts each replica's state. Invariant: a report names the
//! region, the two nodes and the first key where they differ.

use golem_wire::RegionId;

/// One replica's applied index and its pairs in the region's range, in
/// key order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replica {
    pub node: usize,
    pub applied: u64,
    pub pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Checks that every replica equals the first.
pub fn compare(region: RegionId, replicas: &[Replica]) -> Result<(), String> {
    let Some(first) = replicas.first() else {
        return Ok(());
    };
    for r in &replicas[1..] {
        if r.applied != first.applied {
            return Err(format!(
                "region {region}: node {} applied {} but node {} applied {}",
                first.node, first.applied, r.node, r.applied
            ));
        }
        if r.pairs != first.pairs {
            let at = first
                .pairs
                .iter()
                .zip(&r.pairs)
                .position(|(a, b)| a != b)
                .unwrap_or(first.pairs.len().min(r.pairs.len()));
            let show = |p: Option<&(Vec<u8>, Vec<u8>)>| match p {
                Some((k, v)) => format!(
                    "{}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                ),
                None => "(end)".to_owned(),
            };
            return Err(format!(
                "region {region}: nodes {} and {} differ at pair {at}: {} vs {}",
                first.node,
                r.node,
                show(first.pairs.get(at)),
                show(r.pairs.get(at))
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rep(node: usize, applied: u64, pairs: &[(&str, &str)]) -> Replica {
        Replica {
            node,
            applied,
            pairs: pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    #[test]
    fn equal_replicas_pass_and_differences_are_named() {
        let r = RegionId(3);
        let a = rep(0, 5, &[("a", "1"), ("b", "2")]);
        compare(r, &[a.clone(), rep(1, 5, &[("a", "1"), ("b", "2")])]).unwrap();
        compare(r, &[]).unwrap();
        let err = compare(r, &[a.clone(), rep(2, 5, &[("a", "1"), ("b", "3")])]).unwrap_err();
        assert!(err.contains("b=2 vs b=3"), "{err}");
        let err = compare(r, &[a.clone(), rep(2, 5, &[("a", "1")])]).unwrap_err();
        assert!(err.contains("(end)"), "{err}");
        let err = compare(r, &[a, rep(1, 4, &[("a", "1"), ("b", "2")])]).unwrap_err();
        assert!(err.contains("applied 4"), "{err}");
    }
}
