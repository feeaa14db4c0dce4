//! Fail-stop: the one way this process reacts to an error it must not survive.
//!
//! Owns the policy for errors after which the process's durable state can no
//! longer be trusted, above all a failed `write` or `fdatasync` on the WAL.
//! After a failed fsync the kernel may already have dropped the dirty data
//! and cleared the error ("fsyncgate", PostgreSQL 2018): a retry can report
//! success for data that is gone. Invariant: such errors are never retried
//! and never turned into a client-visible error; the process logs and aborts,
//! and recovery (replaying the WAL) decides what survived.

/// Logs `what` failed with `err` at error level and aborts the process.
///
/// `abort` (not `exit` or a panic) so that no destructor, `atexit` handler or
/// unwinding code can write anything more after the failure.
#[cold]
#[inline(never)]
pub fn fail_stop(what: &str, err: &dyn std::fmt::Display) -> ! {
    tracing::error!(what, error = %err, "fatal storage error: stopping the process (fail-stop, never retried)");
    // Also to stderr directly, in case no tracing subscriber is installed.
    eprintln!("golem: fatal: {what}: {err}; aborting (fail-stop)");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;

    const CHILD_ENV: &str = "GOLEM_TEST_FAIL_STOP_CHILD";

    /// In the child process (re-run of this test binary), fails stop.
    #[test]
    fn fail_stop_child() {
        if std::env::var_os(CHILD_ENV).is_some() {
            super::fail_stop("testing fail-stop", &"injected error");
        }
    }

    #[test]
    fn fail_stop_aborts_the_process() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "fatal::tests::fail_stop_child", "--nocapture"])
            .env(CHILD_ENV, "1")
            .output()
            .unwrap();
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("testing fail-stop: injected error"),
            "{stderr}"
        );
    }
}
