//! The progress bar (indicatif): shown on stderr only when stdout is a
//! terminal, so piped or redirected runs (scripts, CI) print clean tables.
//!
//! Owns a ticker task that reads the driver's relaxed counter a few times a
//! second; workers never touch the bar. Invariant: `finish` clears the bar.

use crate::driver::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Redraw period, in milliseconds.
const TICK_MS: u64 = 200;

/// What the bar counts towards.
#[derive(Clone, Copy, Debug)]
pub enum Goal {
    Ops(u64),
    Seconds(u64),
}

/// A running bar; dropping it without `finish` leaves the ticker to stop
/// with the runtime.
pub struct Bar {
    bar: ProgressBar,
    ticker: tokio::task::JoinHandle<()>,
}

impl Bar {
    pub fn start(label: &str, goal: Goal, counter: Arc<Progress>) -> Bar {
        let target = if std::io::stdout().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let (len, template) = match goal {
            Goal::Ops(n) => (
                n,
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} ops ({per_sec})",
            ),
            Goal::Seconds(s) => (
                s,
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} s {msg}",
            ),
        };
        let bar = ProgressBar::with_draw_target(Some(len), target);
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.set_prefix(label.to_string());
        let b = bar.clone();
        let started = Instant::now();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(TICK_MS)).await;
                let done = counter.done.load(Ordering::Relaxed);
                match goal {
                    Goal::Ops(_) => b.set_position(done),
                    Goal::Seconds(_) => {
                        b.set_position(started.elapsed().as_secs());
                        b.set_message(format!("{done} ops"));
                    }
                }
            }
        });
        Bar { bar, ticker }
    }

    pub fn finish(self) {
        self.ticker.abort();
        self.bar.finish_and_clear();
    }
}
