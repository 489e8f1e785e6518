//! A `skiff sim` process (hollow nodes) against an `Init`'s API server, and the stop file
//! through which a test silences some of its nodes.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use super::control_plane::Init;

/// A running `skiff sim`, killed on drop.
pub struct Sim {
    child: Child,
    /// Names of the nodes that stop heartbeating, one per line.
    pub stop_file: PathBuf,
    log: PathBuf,
}

impl Sim {
    /// `nodes` hollow nodes named `<prefix><i>`, each with 2 CPUs, 8 GiB and room for
    /// `pods` pods.
    pub fn start(init: &Init, prefix: &str, nodes: usize, pods: usize) -> Sim {
        let stop_file = init.dir.path().join(format!("{prefix}stopped"));
        let log = init.dir.path().join(format!("{prefix}sim.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_skiff"))
            .arg("sim")
            .arg("--kubeconfig")
            .arg(init.kubeconfig())
            .args(["--nodes", &nodes.to_string(), "--prefix", prefix])
            .args(["--cpu", "2", "--memory", "8Gi", "--pods", &pods.to_string()])
            .arg("--stop-file")
            .arg(&stop_file)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("sim log"))
            .spawn()
            .expect("spawn skiff sim");
        Sim {
            child,
            stop_file,
            log,
        }
    }

    /// Silences `node`'s heartbeats (and resumes every other node's).
    pub fn stop(&self, node: &str) {
        std::fs::write(&self.stop_file, format!("{node}\n")).expect("stop file");
    }

    /// Every node heartbeats again.
    pub fn resume_all(&self) {
        std::fs::write(&self.stop_file, "").expect("stop file");
    }

    /// What the simulator logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
