//! Invariant checkers, each small and tested on its own: one leader per
//! (region, term) ([`leaders`]), committed entries never lost or changed
//! ([`applied`]), replicas converge after healing ([`converge`]), writes
//! answered `NotLeader` after proposing never apply ([`refused`]),
//! per-key linearizability of client histories ([`linearizability`]), and
//! region metadata across membership changes ([`epochs`]: epochs only
//! grow, replicas agree at equal `conf_ver`, ranges never overlap).
//!
//! Owns no simulation state: the simulator feeds each checker what it
//! observes. Invariant: a checker never panics on a violation; it returns
//! a message that names what broke, for the failure report.

pub mod applied;
pub mod converge;
pub mod epochs;
pub mod leaders;
pub mod linearizability;
pub mod refused;
