//! The slog → tracing bridge for raft-rs's logger (a copy of golem-core's:
//! the PD may not link the engine's crates).
//!
//! Owns `TracingDrain`, a slog `Drain` that turns every raft-rs log record
//! into a `tracing` event with target `raft`, at the matching level, with the
//! record's and the logger's key-values (`pd_member`, `raft_id`, …)
//! appended to the message. Invariant: nothing is formatted for a level that
//! `tracing` would discard, so debug chatter costs one check.

use golem_wire::PdMemberId;
use slog::{Drain, Key, OwnedKVList, Record, Serializer, KV};
use std::fmt::{self, Write as _};
use tracing::Level;

/// A slog drain that emits `tracing` events (target `raft`).
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingDrain;

/// A logger for the raft node of PD member `member`.
pub fn raft_logger(member: PdMemberId) -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!("pd_member" => member.get()))
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record<'_>, values: &OwnedKVList) -> Result<(), slog::Never> {
        // `tracing`'s macros need the level as a constant.
        macro_rules! emit {
            ($level:expr) => {
                if tracing::enabled!(target: "raft", $level) {
                    let text = render(record, values);
                    tracing::event!(target: "raft", $level, "{}", text);
                }
            };
        }
        match record.level() {
            slog::Level::Critical | slog::Level::Error => emit!(Level::ERROR),
            slog::Level::Warning => emit!(Level::WARN),
            slog::Level::Info => emit!(Level::INFO),
            slog::Level::Debug => emit!(Level::DEBUG),
            slog::Level::Trace => emit!(Level::TRACE),
        }
        Ok(())
    }
}

/// The message followed by ` key=value` for the record's pairs, then the
/// logger's.
fn render(record: &Record<'_>, values: &OwnedKVList) -> String {
    let mut out = KvText(String::new());
    let _ = write!(out.0, "{}", record.msg());
    let _ = record.kv().serialize(record, &mut out);
    let _ = values.serialize(record, &mut out);
    out.0
}

struct KvText(String);

impl Serializer for KvText {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments<'_>) -> slog::Result {
        let _ = write!(self.0, " {key}={val}");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_message_and_values() {
        let logger = raft_logger(PdMemberId(3));
        // No subscriber is installed: this must simply not panic.
        slog::info!(logger, "became leader at term {term}", term = 4; "extra" => 1);
        slog::debug!(logger, "quiet");
    }
}
