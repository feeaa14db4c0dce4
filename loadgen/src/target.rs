//! Where the load goes: a given address, a running default playground, or
//! a playground this run starts and stops.
//!
//! Owns the child playground's lifecycle. Invariant: a playground started
//! here is stopped by its pid (SIGTERM, then SIGKILL) before the run ends,
//! also when the run fails.

use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The address a default `golem playground` listens on.
pub const DEFAULT_PLAYGROUND_ADDR: &str = "127.0.0.1:7400";
/// How long a started playground may take to listen.
const START_TIMEOUT_MS: u64 = 60_000;

/// The cluster under load.
#[derive(Debug)]
pub struct Target {
    pub addr: SocketAddr,
    playground: Option<Child>,
}

impl Target {
    /// Resolves the target of a run.
    pub fn resolve(addr: Option<SocketAddr>, golem_bin: Option<PathBuf>) -> Result<Target, String> {
        if let Some(addr) = addr {
            return Ok(Target {
                addr,
                playground: None,
            });
        }
        let default: SocketAddr = DEFAULT_PLAYGROUND_ADDR.parse().expect("valid default");
        if TcpStream::connect_timeout(&default, Duration::from_millis(300)).is_ok() {
            eprintln!("using the playground at {default}");
            return Ok(Target {
                addr: default,
                playground: None,
            });
        }
        let bin = match golem_bin {
            Some(b) => b,
            None => {
                let me = std::env::current_exe().map_err(|e| e.to_string())?;
                me.with_file_name("golem")
            }
        };
        if !bin.exists() {
            return Err(format!(
                "no cluster at {default} and no `golem` binary at {} to start one \
                 (build it with `cargo build --release --bin golem`, or pass --addr)",
                bin.display()
            ));
        }
        eprintln!("starting a playground with {}", bin.display());
        let child = Command::new(&bin)
            .arg("playground")
            .arg("--listen")
            .arg(default.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
        let mut target = Target {
            addr: default,
            playground: Some(child),
        };
        let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
        loop {
            if TcpStream::connect_timeout(&default, Duration::from_millis(200)).is_ok() {
                return Ok(target);
            }
            if let Some(Ok(Some(status))) = target.playground.as_mut().map(|c| c.try_wait()) {
                return Err(format!("the playground exited during start-up ({status})"));
            }
            if Instant::now() > deadline {
                return Err("the playground did not start in time".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A description for the report.
    pub fn describe(&self) -> String {
        match self.playground {
            Some(_) => format!("{} (playground started by loadgen)", self.addr),
            None => self.addr.to_string(),
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let Some(child) = self.playground.as_mut() else {
            return;
        };
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
