//! The `golem` binary: see `golem --help`.

fn main() -> std::process::ExitCode {
    golem_engine::cli::main()
}
