//! Typed identifiers.
//!
//! Owns the newtypes for every id that crosses a module or process boundary,
//! so that a region id can never be passed where a store id is expected.
//! Invariant: every id is a plain integer on the wire (rkyv archives a
//! newtype exactly like its inner integer), so the types cost nothing.

use rkyv::{Archive, Deserialize, Serialize};

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident($inner:ty)) => {
        $(#[$doc])*
        #[derive(
            Archive, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd,
            Ord, Hash,
        )]
        #[rkyv(derive(Debug, PartialEq, Eq))]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw integer, for logs, file names and foreign APIs (raft-rs).
            pub const fn get(self) -> $inner {
                self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl From<&rkyv::Archived<$name>> for $name {
            fn from(archived: &rkyv::Archived<$name>) -> Self {
                $name(archived.0.into())
            }
        }
    };
}

typed_id!(
    /// A cluster, fixed at bootstrap; exchanged in the handshake so that a
    /// client never talks to the wrong cluster.
    ClusterId(u64)
);
typed_id!(
    /// A storage node (`golem node` process).
    StoreId(u64)
);
typed_id!(
    /// One core's executor inside a node; also its port offset.
    ShardId(u16)
);
typed_id!(
    /// A region: one key range and its Raft group.
    RegionId(u64)
);
typed_id!(
    /// One replica of a region (a Raft peer id; never 0, which raft-rs reserves).
    PeerId(u64)
);
typed_id!(
    /// A Raft term.
    Term(u64)
);
typed_id!(
    /// A position in a region's Raft log.
    LogIndex(u64)
);
typed_id!(
    /// A member of the Placement Driver's Raft group (a raft-rs node id;
    /// never 0, which raft-rs reserves).
    PdMemberId(u64)
);
typed_id!(
    /// Identifies one request on one connection; chosen by the client,
    /// echoed in the response. Unique among the connection's in-flight
    /// requests (a reused id is rejected), free to wrap around.
    RequestId(u32)
);

/// A region's epoch. `conf_ver` grows on every membership change, `version`
/// on every split or merge. A request routed with a different epoch gets
/// `EpochNotMatch` with the current regions.
#[derive(
    Archive,
    Serialize,
    Deserialize,
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct RegionEpoch {
    pub conf_ver: u64,
    pub version: u64,
}

impl From<&ArchivedRegionEpoch> for RegionEpoch {
    fn from(a: &ArchivedRegionEpoch) -> Self {
        RegionEpoch {
            conf_ver: a.conf_ver.into(),
            version: a.version.into(),
        }
    }
}
