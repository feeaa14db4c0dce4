//! `golem playground`: a whole local cluster in one command.
//!
//! Owns starting the cluster's processes as children of this one, telling
//! the user how to connect, and stopping every child on Ctrl-C. The
//! cluster is one Placement Driver (`--pd 3`: three members on consecutive
//! ports from `--pd-listen`) started with `--initial-replicas` = min(nodes,
//! 3), and `--nodes` nodes (default 3) started with `--pd`, node `i` (from
//! 0) at `--listen`'s port + `i` × `NODE_PORT_STRIDE` (7400, 7410, 7420;
//! its shards on the ports after it), each with its own data directory and
//! log file. The PD bootstraps the cluster once the first nodes have
//! joined, with the first region replicated on each of them. Invariants:
//! every child is stopped by its pid before this process exits (SIGTERM,
//! then SIGKILL after a grace period), the nodes before the PD; a
//! temporary data directory is removed afterwards, a given `--data-dir` is
//! kept.

use crate::config::{DEFAULT_LISTEN, SHARDS_MAX};
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
/// Ports between two nodes' first shards (more if a node has more shards).
pub const NODE_PORT_STRIDE: u16 = 10;
/// Most nodes a playground runs.
pub const NODES_MAX: u8 = 9;
/// Replicas of the first region, at most (fewer nodes: one on each).
pub const INITIAL_REPLICAS: u8 = 3;
/// How long the banner waits for the first region to elect a leader.
const LEADER_WAIT_MS: u64 = 15_000;

#[derive(Debug, Args)]
pub struct PlaygroundArgs {
    /// Keep data here instead of a temporary directory (removed on exit).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Base listen address of the first node; shard i listens on port+i,
    /// node n (from 0) on port + 10n (more if nodes have over 10 shards).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Nodes to run (1..=9). The first region is replicated on the first
    /// three (on each, with fewer); 1 is a single-node cluster.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=NODES_MAX as i64))]
    pub nodes: u8,
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
    /// Asks the child to stop (SIGTERM) without waiting.
    fn terminate(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = self.child.id() as libc::pid_t;
            // SAFETY: sending a signal to our own child's pid; no memory involved.
            unsafe { libc::kill(pid, libc::SIGTERM) };
        }
    }

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
    let initial_replicas = args.nodes.min(INITIAL_REPLICAS);
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
            .arg(&peers)
            .arg("--initial-replicas")
            .arg(initial_replicas.to_string());
        let child = spawn_logged(cmd, &name, &log_path)?;
        pds.push((child, *addr, dir, log_path));
    }
    for (child, addr, _, log_path) in &mut pds {
        if let Err(e) = wait_listening(child, *addr) {
            print_log_tail(log_path);
            return Err(e.into());
        }
    }
    let shards = args.shards.unwrap_or_else(|| {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        cpus.min(SHARDS_MAX as usize) as u16
    });
    let node_addrs = node_addrs(args.listen, args.nodes, shards)?;
    let pd_list = pd_addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(",");
    // Every node first: none listens before the PD has bootstrapped the
    // cluster, which waits for the first `initial_replicas` of them.
    let mut nodes = Vec::new();
    for (i, addr) in node_addrs.iter().enumerate() {
        let name = format!("node-{}", i + 1);
        let dir = data_dir.join(&name);
        std::fs::create_dir_all(&dir)?;
        let log_path = data_dir.join(format!("{name}.log"));
        let mut cmd = Command::new(&exe);
        cmd.arg("node")
            .arg("--data-dir")
            .arg(&dir)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--pin")
            .arg("off")
            .arg("--pd")
            .arg(&pd_list);
        if let Some(s) = args.shards {
            cmd.arg("--shards").arg(s.to_string());
        }
        let child = spawn_logged(cmd, &name, &log_path)?;
        nodes.push((child, *addr, dir, log_path));
    }
    for (child, addr, _, log_path) in &mut nodes {
        if let Err(e) = wait_listening(child, *addr) {
            print_log_tail(log_path);
            return Err(e.into());
        }
    }
    let leader = if args.nodes > 1 {
        wait_for_leader(&pd_addrs)
    } else {
        true
    };
    println!("GolemDB playground is running.");
    for (i, (_, addr, dir, log)) in nodes.iter().enumerate() {
        println!(
            "  node {}: {addr}  data {}  log {}",
            i + 1,
            dir.display(),
            log.display()
        );
    }
    for (i, (_, addr, dir, log)) in pds.iter().enumerate() {
        println!(
            "  pd {}:   {addr}  data {}  log {}",
            i + 1,
            dir.display(),
            log.display()
        );
    }
    if args.nodes > 1 {
        if args.nodes <= INITIAL_REPLICAS {
            println!("  the first region is replicated on every node");
        } else {
            println!(
                "  the first region is replicated on {initial_replicas} of the nodes (the first to join)"
            );
        }
        if !leader {
            println!("  (no leader elected yet for the first region: see the node logs)");
        }
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

    // Wait for a signal, or for a node to exit on its own.
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
        for (node, _, _, log_path) in &mut nodes {
            if let Ok(Some(status)) = node.child.try_wait() {
                print_log_tail(log_path);
                return Err(format!("{} exited unexpectedly ({status})", node.name).into());
            }
        }
    }
    // The nodes first, all at once (they report to the PD until they stop,
    // and a leader hands its regions over while the others still run),
    // then the PD.
    for (node, ..) in &mut nodes {
        node.terminate();
    }
    for (node, ..) in &mut nodes {
        node.stop();
    }
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

/// Base addresses of `nodes` nodes of `shards` shards each: the first at
/// `first`, the next `NODE_PORT_STRIDE` ports further (or the next multiple
/// of it that leaves room for every shard).
fn node_addrs(first: SocketAddr, nodes: u8, shards: u16) -> Result<Vec<SocketAddr>, String> {
    let stride = u32::from(shards.max(1)).div_ceil(u32::from(NODE_PORT_STRIDE))
        * u32::from(NODE_PORT_STRIDE);
    (0..u32::from(nodes))
        .map(|i| {
            let port = u32::from(first.port()) + i * stride;
            if port + u32::from(shards) - 1 > u32::from(u16::MAX) {
                return Err(format!(
                    "node {} would listen beyond port 65535 (--listen {first})",
                    i + 1
                ));
            }
            Ok(SocketAddr::new(first.ip(), port as u16))
        })
        .collect()
}

/// Waits (up to `LEADER_WAIT_MS`) until the PD knows a leader of the first
/// region, so that the first `golem ctl` finds one. False if none came.
fn wait_for_leader(pd: &[SocketAddr]) -> bool {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return false;
    };
    let client = golem_pd::client::PdClient::new(
        pd.to_vec(),
        golem_pd::client::PdClientConfig {
            request_timeout_ms: 1_000,
            client_name: "golem-playground".into(),
            ..Default::default()
        },
    );
    let deadline = Instant::now() + Duration::from_millis(LEADER_WAIT_MS);
    while Instant::now() < deadline {
        if let Ok(Some(route)) = rt.block_on(client.get_region(b"")) {
            if route.leader.is_some() {
                return true;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_ten_ports_apart_unless_they_have_more_shards() {
        let first: SocketAddr = "127.0.0.1:7400".parse().unwrap();
        let ports = |nodes, shards| -> Vec<u16> {
            node_addrs(first, nodes, shards)
                .unwrap()
                .iter()
                .map(|a| a.port())
                .collect()
        };
        assert_eq!(ports(3, 2), [7400, 7410, 7420]);
        assert_eq!(ports(3, 10), [7400, 7410, 7420]);
        assert_eq!(ports(2, 11), [7400, 7420]);
        assert_eq!(ports(1, 64), [7400]);
        let high: SocketAddr = "127.0.0.1:65530".parse().unwrap();
        assert!(node_addrs(high, 2, 2).is_err());
        assert!(node_addrs(high, 1, 6).is_ok());
    }
}
