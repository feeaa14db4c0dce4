//! SIGINT/SIGTERM handling for the long-running subcommands.
//!
//! Owns blocking the stop signals so that one thread receives them with
//! `sigwait` instead of an async handler. Invariant: `block_stop_signals`
//! runs before any thread is spawned, so every thread inherits the mask and
//! the signal goes to the waiting thread only; child processes get an empty
//! mask back (`unblock_in_child`).

use std::process::Command;

/// Blocks SIGINT and SIGTERM in this thread (and so in every thread it
/// spawns afterwards) and returns the set, for [`wait`].
pub fn block_stop_signals() -> std::io::Result<libc::sigset_t> {
    // SAFETY: sigset_t is plain data; sigemptyset/sigaddset initialize it and
    // pthread_sigmask only reads it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        Ok(set)
    }
}

/// Waits for one of the signals in `set` (blocked beforehand); returns it.
pub fn wait(set: &libc::sigset_t) -> std::io::Result<libc::c_int> {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` is an initialized sigset; `sig` is a valid out pointer.
    let rc = unsafe { libc::sigwait(set, &mut sig) };
    if rc != 0 {
        return Err(std::io::Error::from_raw_os_error(rc));
    }
    Ok(sig)
}

/// Waits up to `limit` for one of the signals in `set`; `None` if none came.
pub fn wait_timeout(
    set: &libc::sigset_t,
    limit: std::time::Duration,
) -> std::io::Result<Option<libc::c_int>> {
    let ts = libc::timespec {
        tv_sec: limit.as_secs() as libc::time_t,
        tv_nsec: limit.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `set` is an initialized sigset; `ts` is a valid timespec; the
    // siginfo out pointer may be null.
    let rc = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    if rc >= 0 {
        return Ok(Some(rc));
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
        _ => Err(e),
    }
}

/// Makes a child process start with no blocked signals.
pub fn unblock_in_child(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls
    // async-signal-safe functions on a local sigset.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}
