//! A single-node control plane (`skiff init`) for API server tests, and kubectl pointed at it.

use super::cluster::*;
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A running `skiff init`, killed on drop.
pub struct Init {
    child: Child,
    pub dir: TestDir,
    /// host:port of the API server.
    pub api: String,
    /// host:port of the store's client endpoint.
    pub store: String,
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Init {
    pub fn start(label: &str) -> Init {
        Init::start_with(label, &[])
    }

    pub fn start_with(label: &str, extra: &[&str]) -> Init {
        let ip = Ipv4Addr::new(127, 0, 0, 61);
        let dir = TestDir::new(label);
        let (store, peer, api) = (alloc_port(ip), alloc_port(ip), alloc_port(ip));
        let log = std::fs::File::create(dir.path().join("init.log")).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .args(["init", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--store-listen", &format!("{ip}:{store}")])
            .args(["--store-peer-listen", &format!("{ip}:{peer}")])
            .args(["--apiserver-listen", &format!("{ip}:{api}")])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn skiff init");
        let init = Init {
            child,
            dir,
            api: format!("{ip}:{api}"),
            store: format!("{ip}:{store}"),
        };
        let conf = init.kubeconfig();
        let up = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            conf.exists() && TcpStream::connect(&init.api).is_ok()
        });
        assert!(
            up,
            "skiff init did not serve the API within 30 s:\n{}",
            std::fs::read_to_string(init.dir.path().join("init.log")).unwrap_or_default()
        );
        init
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("data").join("admin.conf")
    }

    /// Runs kubectl with the admin kubeconfig and a private discovery cache.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_in(args, None)
    }

    /// Runs kubectl with `stdin` fed in (for `apply -f -`).
    pub fn kubectl_in(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        self.kubectl_env(args, stdin, &[])
    }

    /// Runs kubectl with extra environment (`EDITOR` for `kubectl edit`).
    pub fn kubectl_env(&self, args: &[&str], stdin: Option<&[u8]>, env: &[(&str, &str)]) -> Output {
        let home = self.dir.path().join("home");
        let _ = std::fs::create_dir_all(&home);
        run_with_timeout(
            Command::new("kubectl")
                .envs(env.iter().copied())
                .env("HOME", &home)
                .arg("--kubeconfig")
                .arg(self.kubeconfig())
                .args(args),
            stdin,
            Duration::from_secs(30),
        )
    }

    /// Like [`Init::kubectl`], panicking with the output unless it succeeds; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        check_ok(&format!("kubectl {}", args.join(" ")), &self.kubectl(args))
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {} should have failed:\n{}",
            args.join(" "),
            describe(&out)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A long-running kubectl (`get -w`), its lines read with deadlines.
    pub fn kubectl_stream(&self, args: &[&str]) -> LineReader {
        let home = self.dir.path().join("home");
        let _ = std::fs::create_dir_all(&home);
        LineReader::spawn(
            Command::new("kubectl")
                .env("HOME", &home)
                .arg("--kubeconfig")
                .arg(self.kubeconfig())
                .args(args),
            Some(
                self.dir
                    .path()
                    .join(format!("stream-{}.log", args.join("-").replace('/', "_"))),
            ),
        )
    }
}
