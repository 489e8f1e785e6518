//! `skiff image ...`: the node's image store from the command line (pull, ls, rm, import).
//! The work is in `skiff_node_agent::image`; this file parses flags, prints progress and
//! turns store errors into messages that say how to fix them.

use anyhow::{anyhow, Context, Result};
use clap::{Args, Subcommand};
use skiff_node_agent::image::{
    Auth, ImageError, ImageStore, PullOptions, PullProgress, UnpackError, DEFAULT_ROOT,
};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Manage the node's image store.
#[derive(Args)]
pub struct ImageArgs {
    /// Directory of the image store.
    #[arg(long, global = true, value_name = "DIR", default_value = DEFAULT_ROOT)]
    root: PathBuf,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Pull an image from a registry (registries on 127.0.0.1/localhost use plain HTTP).
    Pull {
        /// Image reference, e.g. busybox:1.36, 127.0.0.1:5000/app:v1, repo@sha256:<digest>.
        reference: String,
        /// User name for the registry (HTTP basic auth or token login).
        #[arg(long, requires = "password")]
        username: Option<String>,
        /// Password for the registry.
        #[arg(
            long,
            requires = "username",
            env = "SKIFF_REGISTRY_PASSWORD",
            hide_env_values = true
        )]
        password: Option<String>,
    },
    /// List the images in the store.
    Ls,
    /// Remove an image (by reference or manifest digest) and the blobs and layers only it used.
    Rm {
        /// Image reference or `sha256:<manifest digest>`.
        reference: String,
    },
    /// Import images from a `docker save` tarball or an OCI image layout (archive or directory).
    Import {
        /// The archive or directory.
        file: PathBuf,
    },
}

/// Runs `skiff image ...`.
pub fn run(args: ImageArgs) -> Result<()> {
    let store = ImageStore::open(&args.root).map_err(|e| explain(e, &args.root))?;
    match args.command {
        ImageCommand::Pull {
            reference,
            username,
            password,
        } => {
            let auth = match (username, password) {
                (Some(username), Some(password)) => Auth::Basic { username, password },
                _ => Auth::Anonymous,
            };
            let opts = PullOptions {
                auth,
                ..PullOptions::default()
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            eprintln!("pulling {reference}");
            let image = runtime
                .block_on(store.pull(&reference, &opts, &print_progress))
                .map_err(|e| explain(e, &args.root))?;
            println!("{} {}", image.reference, image.digest);
        }
        ImageCommand::Ls => {
            let images = store.list().map_err(|e| explain(e, &args.root))?;
            let width = images
                .iter()
                .map(|i| i.reference.len())
                .max()
                .unwrap_or(0)
                .max("REFERENCE".len());
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "{:width$}  {:<19}  {:>10}  {:>6}  CREATED",
                "REFERENCE", "DIGEST", "SIZE", "LAYERS"
            )?;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            for i in images {
                let short = i.digest.get(..19).unwrap_or(&i.digest);
                writeln!(
                    out,
                    "{:width$}  {:<19}  {:>10}  {:>6}  {} ago",
                    i.reference,
                    short,
                    human_bytes(i.size),
                    i.layers,
                    human_age(now.saturating_sub(i.created))
                )?;
            }
        }
        ImageCommand::Rm { reference } => {
            let report = store
                .remove(&reference)
                .map_err(|e| explain(e, &args.root))?;
            for r in &report.removed {
                println!("removed {r}");
            }
            eprintln!("freed {}", human_bytes(report.freed_bytes));
        }
        ImageCommand::Import { file } => {
            let images = store.import(&file).map_err(|e| explain(e, &args.root))?;
            for i in images {
                println!("imported {} {}", i.reference, i.digest);
            }
        }
    }
    Ok(())
}

/// Pull progress on stderr, one line per event.
fn print_progress(p: PullProgress) {
    let short = |d: &str| d.get(7..19).unwrap_or(d).to_string();
    match p {
        PullProgress::Resolved { digest, layers, .. } => {
            eprintln!("manifest {digest} ({layers} layers)")
        }
        PullProgress::Downloading { layer, done, total } if done < total => eprintln!(
            "  {}: downloading {} / {}",
            short(&layer),
            human_bytes(done),
            human_bytes(total)
        ),
        PullProgress::Downloading { layer, total, .. } => {
            eprintln!("  {}: downloaded {}", short(&layer), human_bytes(total))
        }
        PullProgress::AlreadyPresent { layer, total } => eprintln!(
            "  {}: already present ({})",
            short(&layer),
            human_bytes(total)
        ),
        PullProgress::Unpacked { layer, reused } => eprintln!(
            "  {}: {}",
            short(&layer),
            if reused {
                "already unpacked"
            } else {
                "unpacked"
            }
        ),
        PullProgress::Done { reference, digest } => eprintln!("pulled {reference}@{digest}"),
    }
}

/// The store's error, plus what to do about it.
fn explain(e: ImageError, root: &std::path::Path) -> anyhow::Error {
    let hint = match &e {
        ImageError::AuthRequired { .. } => {
            "the registry requires credentials; pass --username/--password".to_string()
        }
        ImageError::CredentialsRefused { .. } => {
            "the registry refused the credentials; pass the right --username/--password".to_string()
        }
        ImageError::InvalidReference { .. } => {
            "references are lower case, like busybox, busybox:1.36 or 127.0.0.1:5000/team/app:v1".to_string()
        }
        ImageError::NotFound { .. } => {
            "check the repository name and the tag or digest".to_string()
        }
        ImageError::Unreachable { .. } => {
            "check the registry's address and that it is up (registries on 127.0.0.1 and localhost are spoken to over plain HTTP, others over HTTPS)".to_string()
        }
        ImageError::NotPresent(_) => "`skiff image ls` lists the images in the store".to_string(),
        ImageError::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            format!(
                "the image store {} needs write access: run as root or pass --root DIR",
                root.display()
            )
        }
        ImageError::Unpack {
            source: UnpackError::Io { source, .. },
            ..
        } if source.kind() == std::io::ErrorKind::PermissionDenied => {
            "unpacking layers needs root (device nodes, ownership, trusted.* xattrs)".to_string()
        }
        _ => return anyhow!(e),
    };
    anyhow!("{e}\nhint: {hint}")
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn human_age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}
