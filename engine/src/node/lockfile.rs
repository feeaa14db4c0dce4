//! The data directory's lock file and the listen-port probe.
//!
//! Owns the guarantees that one data directory is used by one process and
//! that a node never silently shares its ports with another daemon (glommio
//! binds with SO_REUSEPORT, which would otherwise split traffic between two
//! processes). Invariant: while a `DataDirLock` lives, this process holds an
//! exclusive `flock` on `<data-dir>/LOCK`.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::Path;

/// An exclusive lock on a data directory, released when dropped (or when
/// the process dies: the kernel drops flocks with the file descriptor).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Locks `dir/LOCK`, writing this process's pid into it.
    pub fn acquire(dir: &Path) -> std::io::Result<DataDirLock> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("LOCK");
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        // SAFETY: flock on a valid, owned file descriptor; no memory is passed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let holder = std::fs::read_to_string(&path).unwrap_or_default();
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!(
                    "data directory {} is in use by another process (pid {})",
                    dir.display(),
                    holder.trim()
                ),
            ));
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        Ok(DataDirLock { _file: file })
    }
}

/// Fails if any address is already bound by another socket. A plain bind
/// (without SO_REUSEPORT) conflicts with any existing listener, including
/// a glommio one, so this catches a second daemon on the same ports.
pub fn probe_ports_free(addrs: &[SocketAddr]) -> std::io::Result<()> {
    for addr in addrs {
        std::net::TcpListener::bind(addr).map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}"))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_dir_fails() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn probe_detects_bound_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(probe_ports_free(&[addr]).is_err());
        drop(l);
        probe_ports_free(&[addr]).unwrap();
    }
}
