//! `golem playground`: a whole local cluster in one command.
//!
//! Owns starting the cluster's processes as children of this one, telling
//! the user how to connect, and stopping every child on Ctrl-C. The
//! cluster is one Placement Driver (`--pd 3`: three members on consecutive
//! ports from `--pd-listen`) and one node started with `--pd` (#5 brings
//! three nodes). Invariants: every child is stopped by its pid before this
//! process exits (SIGTERM, then SIGKILL after a grace period), the nodes
//! before the PD; a temporary data directory is removed afterwards, a
//! given `--data-dir` is kept.

use crate::config::DEFAULT_LISTEN;
use clap::Args;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// How long a node may take to start listening.
const START_TIMEOUT_MS: u64 = 30_000;
/// How long a child may take to stop after SIGTERM before it is killed.
const STOP_GRACE_MS: u64 = 10_000;

#[derive(Debug, Args)]
pub struct PlaygroundArgs {
    /// Keep data here instead of a temporary directory (removed on exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Base listen address of the first node; shard i listens on port+i.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Shards per node. Default: number of CPUs.
    #[arg(long)]
    pub shards: Option<u16>,
    /// PD members to run: 1 or 3.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=3))]
    pub pd: u8,
    /// Address of the first PD member; member i listens on port+i-1.
    #[arg(long, default_value = super::ctl::DEFAULT_PD)]
    pub pd_listen: SocketAddr,
}

/// A child process, stopped by pid when dropped.
struct ChildGuard {
    name: String,
    child: Child,
}

impl ChildGuard {
    fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: sending a signal to our own child's pid; no memory involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                tracing::info!(child = %self.name, %status, "stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::warn!(child = %self.name, "did not stop in time; killing it");
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the playground until Ctrl-C.
pub fn run(args: PlaygroundArgs) -> ExitCode {
    match run_inner(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("golem playground: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_inner(args: PlaygroundArgs) -> Result<(), Box<dyn std::error::Error>> {
    // Block SIGINT/SIGTERM here so that this process decides how to stop;
    // children get their own default dispositions back via exec.
    let signals = crate::signals::block_stop_signals()?;
    let (data_dir, _temp) = match &args.data_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("golem-playground-")
                .tempdir()?;
            (t.path().to_owned(), Some(t))
        }
    };
    if args.pd == 2 {
        return Err("--pd must be 1 or 3 (a PD group of 2 cannot lose a member)".into());
    }
    let exe = std::env::current_exe()?;
    let pd_addrs: Vec<SocketAddr> = (0..u16::from(args.pd))
        .map(|i| SocketAddr::new(args.pd_listen.ip(), args.pd_listen.port() + i))
        .collect();
    let peers = pd_addrs
        .iter()
        .enumerate()
        .map(|(i, a)| format!("{}={a}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut pds = Vec::new();
    for (i, addr) in pd_addrs.iter().enumerate() {
        let name = format!("pd-{}", i + 1);
        let dir = data_dir.join(&name);
        std::fs::create_dir_all(&dir)?;
        let log_path = data_dir.join(format!("{name}.log"));
        let mut cmd = Command::new(&exe);
        cmd.arg("pd")
            .arg("--id")
            .arg((i + 1).to_string())
            .arg("--data-dir")
            .arg(&dir)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--peers")
            .arg(&peers);
        let child = spawn_logged(cmd, &name, &log_path)?;
        pds.push((child, *addr, dir, log_path));
    }
    for (child, addr, _, log_path) in &mut pds {
        if let Err(e) = wait_listening(child, *addr) {
            print_log_tail(log_path);
            return Err(e.into());
        }
    }
    let node_dir = data_dir.join("node-1");
    std::fs::create_dir_all(&node_dir)?;
    let log_path = data_dir.join("node-1.log");
    let mut cmd = Command::new(&exe);
    cmd.arg("node")
        .arg("--data-dir")
        .arg(&node_dir)
        .arg("--listen")
        .arg(args.listen.to_string())
        .arg("--pin")
        .arg("off")
        .arg("--pd")
        .arg(
            pd_addrs
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(","),
        );
    if let Some(s) = args.shards {
        cmd.arg("--shards").arg(s.to_string());
    }
    let mut node = spawn_logged(cmd, "node-1", &log_path)?;
    if let Err(e) = wait_listening(&mut node, args.listen) {
        print_log_tail(&log_path);
        return Err(e.into());
    }
    println!("GolemDB playground is running.");
    println!(
        "  node 1: {}  data {}  log {}",
        args.listen,
        node_dir.display(),
        log_path.display()
    );
    for (i, (_, addr, dir, log)) in pds.iter().enumerate() {
        println!(
            "  pd {}:   {addr}  data {}  log {}",
            i + 1,
            dir.display(),
            log.display()
        );
    }
    println!();
    let addr = if args.listen.to_string() == DEFAULT_LISTEN {
        String::new()
    } else {
        format!(" --addr {}", args.listen)
    };
    println!("Try, in another terminal:");
    println!("  cargo run --release --bin golem -- ctl{addr} put hello world");
    println!("  cargo run --release --bin golem -- ctl{addr} get hello");
    let pd = if args.pd_listen.to_string() == super::ctl::DEFAULT_PD {
        String::new()
    } else {
        format!(" --pd {}", args.pd_listen)
    };
    println!("  cargo run --release --bin golem -- ctl{pd} store list");
    println!("  cargo run --release --bin golem -- ctl{pd} region list");
    println!("  cargo run --release --bin golem-loadgen --{addr} --mode mixed --duration-s 10");
    println!();
    println!("Press Ctrl-C to stop.");

    // Wait for a signal, or for the node to exit on its own.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = crate::signals::wait(&signals);
        let _ = tx.send(());
    });
    loop {
        if rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            // The terminal (or a pipe) may be gone: stopping must not fail on it.
            let _ = writeln!(std::io::stdout(), "\nstopping the playground…");
            break;
        }
        if let Ok(Some(status)) = node.child.try_wait() {
            print_log_tail(&log_path);
            return Err(format!("node-1 exited unexpectedly ({status})").into());
        }
    }
    // The nodes first (they report to the PD until they stop), then the PD.
    node.stop();
    for (pd, ..) in &mut pds {
        pd.stop();
    }
    let _ = writeln!(std::io::stdout(), "stopped.");
    Ok(())
}

/// Starts `cmd` with its stderr appended to `log_path`, unblocked signals,
/// and stdout discarded.
fn spawn_logged(
    mut cmd: Command,
    name: &str,
    log_path: &std::path::Path,
) -> std::io::Result<ChildGuard> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)?;
    cmd.stdout(Stdio::null()).stderr(log);
    crate::signals::unblock_in_child(&mut cmd);
    Ok(ChildGuard {
        name: name.into(),
        child: cmd.spawn()?,
    })
}

/// Shows the end of a child's log (the temporary directory is removed on exit).
fn print_log_tail(path: &std::path::Path) {
    const LINES: usize = 20;
    if let Ok(text) = std::fs::read_to_string(path) {
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("last lines of {}:", path.display());
        for l in &lines[lines.len().saturating_sub(LINES)..] {
            eprintln!("  {l}");
        }
    }
}

fn wait_listening(child: &mut ChildGuard, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_millis(START_TIMEOUT_MS);
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.child.try_wait() {
            return Err(format!("{} exited during start-up ({status})", child.name));
        }
        if Instant::now() > deadline {
            return Err(format!("{} did not start listening on {addr}", child.name));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
