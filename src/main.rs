//! `skiff`: one binary for every role. This file only parses the command line; the work is
//! done by the library crates.

mod agent_cmd;
mod bench;
mod bench_api;
mod bench_pods;
mod bench_runtime;
mod bench_schedule;
mod controllers_cmd;
mod image_cmd;
mod sim_cmd;
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
    /// Run the scheduler and the controllers against an API server (`init` runs them itself);
    /// with several running, one of each acts at a time.
    Controllers(controllers_cmd::ControllersArgs),
    /// Manage the node's image store: pull, list, remove and import images.
    Image(image_cmd::ImageArgs),
    /// Run simulated (hollow) nodes against an API server, for scale tests.
    Sim(sim_cmd::SimArgs),
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

/// mimalloc's `arena_eager_commit` option. Eagerly committed arenas (its default on Linux) are
/// never purged, so a process keeps its high-water mark resident: the node agent held 20 MB of
/// freed memory with 100 pods, and `init` (API server, controllers, scheduler) kept a tenth of
/// its peak at 1,000 nodes / 10,000 pods, with the same scheduling throughput either way. Only
/// a standalone store member (`store`) keeps eager arenas, for write throughput.
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// Runs from `.init_array`, before Rust's runtime makes the first allocation (which reserves
/// mimalloc's first arena), with the C `argc`/`argv` so the subcommand can be read without
/// allocating.
extern "C" fn choose_arena_commit(argc: std::ffi::c_int, argv: *const *const std::ffi::c_char) {
    if argc < 2 || argv.is_null() {
        return;
    }
    // SAFETY: the loader passes argv with argc valid NUL-terminated strings.
    let sub = unsafe { std::ffi::CStr::from_ptr(*argv.add(1)) };
    if sub.to_bytes() != b"store" {
        // SAFETY: sets a plain integer option, before any allocation.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_ARENA_EAGER_COMMIT, 0) };
    }
}

#[used]
#[unsafe(link_section = ".init_array")]
static CHOOSE_ARENA_COMMIT: extern "C" fn(std::ffi::c_int, *const *const std::ffi::c_char) =
    choose_arena_commit;

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
        Command::Controllers(args) => controllers_cmd::run(args),
        Command::Image(args) => image_cmd::run(args),
        Command::Sim(args) => sim_cmd::run(args),
        Command::Bench { what } => bench::run(what),
        Command::Shim { .. } => unreachable!("handled above"),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
