//! The PD's client, `PdClient`, lives in the client SDK (`golem_client::pd`)
//! so that the SDK can route through the PD while depending only on
//! `golem-wire`; it is re-exported here for nodes, `golem ctl` and tests.

pub use golem_client::pd::*;
