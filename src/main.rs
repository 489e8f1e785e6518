//! `skiff`: one binary for every role. This file only parses the command line; the work is
//! done by the library crates.

mod agent_cmd;
mod bench;
mod bench_api;
mod bench_pods;
mod bench_runtime;
mod image_cmd;
mod store_cmd;

use clap::{Parser, Subcommand};

/// glibc malloc spends a noticeable share of the store's CPU under many small gRPC messages.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A small Kubernetes-compatible cluster manager.
#[derive(Parser)]
#[command(name = "skiff", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a single-member control plane on this machine.
    Init(store_cmd::InitArgs),
    /// Run a store member, or manage store snapshots.
    Store(Box<store_cmd::StoreArgs>),
    /// Run the node agent: register this machine as a Node and run the pods bound to it.
    Agent(agent_cmd::AgentArgs),
    /// Manage the node's image store: pull, list, remove and import images.
    Image(image_cmd::ImageArgs),
    /// Measure performance.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// Supervise one container; the node agent starts it (see skiff_node_agent::runtime::shim).
    #[command(hide = true, disable_help_flag = true)]
    Shim {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

fn main() {
    let cli = Cli::parse();
    // The shim must stay single-threaded until libcontainer has cloned the container: it sets
    // up its own logging and never starts a tokio runtime.
    if let Command::Shim { args } = &cli.command {
        std::process::exit(skiff_node_agent::runtime::shim::main(args));
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new("info,raft=warn,libcgroups=error")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Init(args) => store_cmd::init(args),
        Command::Store(args) => store_cmd::run(*args),
        Command::Agent(args) => agent_cmd::run(args),
        Command::Image(args) => image_cmd::run(args),
        Command::Bench { what } => bench::run(what),
        Command::Shim { .. } => unreachable!("handled above"),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
