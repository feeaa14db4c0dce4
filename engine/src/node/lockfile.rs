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

/// Fails if another socket is already *listening* on any of `addrs`.
///
/// glommio binds with SO_REUSEPORT, so a second daemon would otherwise share
/// the ports silently. A plain test bind is no good either: after a crash,
/// the dead process's accepted connections linger in FIN_WAIT states and
/// block a bind for up to a minute, although a restart is safe. So this reads
/// the kernel's socket tables (/proc/net/tcp, tcp6) for listeners.
///
/// The listener of a process that was just killed can outlive it briefly
/// (io_uring tears its ring down asynchronously), so a clash is re-checked
/// for up to `PORT_WAIT_MS` before it is reported.
pub fn probe_ports_free(addrs: &[SocketAddr]) -> std::io::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(PORT_WAIT_MS);
    loop {
        match probe_once(addrs) {
            Err(e) if std::time::Instant::now() < deadline => {
                tracing::info!("{e}; waiting for it to go away");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => return other,
        }
    }
}

/// How long a start waits for a lingering listener on its ports to vanish.
pub const PORT_WAIT_MS: u64 = 5_000;

fn probe_once(addrs: &[SocketAddr]) -> std::io::Result<()> {
    let listeners = listening_sockets()?;
    for addr in addrs {
        let clash = listeners.iter().find(|l| {
            l.port() == addr.port()
                && (l.ip() == addr.ip() || l.ip().is_unspecified() || addr.ip().is_unspecified())
        });
        if let Some(other) = clash {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("cannot listen on {addr}: another socket is listening on {other}"),
            ));
        }
    }
    Ok(())
}

/// Addresses of all TCP sockets in LISTEN state on this host's namespace.
fn listening_sockets() -> std::io::Result<Vec<SocketAddr>> {
    let mut out = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        out.extend(text.lines().skip(1).filter_map(|l| parse_listener(l, v6)));
    }
    Ok(out)
}

/// Parses one /proc/net/tcp line; Some(local address) if it is a listener.
fn parse_listener(line: &str, v6: bool) -> Option<SocketAddr> {
    const TCP_LISTEN: &str = "0A";
    let mut fields = line.split_whitespace();
    let local = fields.nth(1)?;
    let state = fields.nth(1)?;
    if state != TCP_LISTEN {
        return None;
    }
    let (ip_hex, port_hex) = local.split_once(':')?;
    let port = u16::from_str_radix(port_hex, 16).ok()?;
    let ip: std::net::IpAddr = if v6 {
        // Four 32-bit words, each in host (little-endian) byte order.
        let mut bytes = [0u8; 16];
        for (w, chunk) in bytes.chunks_mut(4).enumerate() {
            let word = u32::from_str_radix(ip_hex.get(w * 8..w * 8 + 8)?, 16).ok()?;
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        std::net::Ipv6Addr::from(bytes).into()
    } else {
        let word = u32::from_str_radix(ip_hex, 16).ok()?;
        std::net::Ipv4Addr::from(word.to_le_bytes()).into()
    };
    Some(SocketAddr::new(ip, port))
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
    fn parses_proc_net_tcp_lines() {
        let v4 = "   0: 0100007F:1CE8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0";
        assert_eq!(
            parse_listener(v4, false),
            Some("127.0.0.1:7400".parse().unwrap())
        );
        let established = v4.replace(" 0A ", " 01 ");
        assert_eq!(parse_listener(&established, false), None);
        let v6 = "   0: 00000000000000000000000001000000:1CE8 00000000000000000000000000000000:0000 0A 0";
        assert_eq!(
            parse_listener(v6, true),
            Some("[::1]:7400".parse().unwrap())
        );
        assert_eq!(parse_listener("garbage", false), None);
    }

    #[test]
    fn probe_detects_bound_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        assert!(probe_ports_free(&[addr]).is_err());
        // A connection still open on the port is not a listener.
        let client = std::net::TcpStream::connect(addr).unwrap();
        let (_server_side, _) = l.accept().unwrap();
        drop(l);
        probe_ports_free(&[addr]).unwrap();
        drop(client);
    }
}
