//! The node agent's gRPC service (`skiff.agent.v1.Agent`) end to end: the real
//! `AgentService` on 127.0.0.1 over a real `Runtime` running busybox containers through the
//! built `skiff` binary's shim and exec helper, called with the generated client. Exec with
//! pipes and a terminal, CRI logs (tail, timestamps, follow, previous) and port-forward into
//! a network namespace the test makes. Root only; skips loudly otherwise.

mod common;
#[path = "common/agent_service.rs"]
mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::runtime::RuntimeEnv;
use skiff_node_agent::runtime::spec::{self, ContainerConfig, ImageDefaults, NamespaceMode};
use skiff_node_agent::runtime::{CreateRequest, LogRotation, Runtime, RuntimeError};
use skiff_node_agent::service::ContainerRef;
use skiff_proto::agent::agent_client::AgentClient;
use skiff_proto::agent::exec_input::Input;
use skiff_proto::agent::exec_output::Output;
use skiff_proto::agent::port_forward_input::Input as PfInput;
use skiff_proto::agent::{
    ExecInput, ExecStart, LogRequest, PortForwardInput, PortForwardStart, TerminalSize,
};
use support::{TestNetns, TestPods, NAMESPACE, POD, POD_UID};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

const T: Duration = Duration::from_secs(30);

/// A test's world: containers, the pod directory, the service and a client. Containers go
/// first, then the namespace, then the runtime environment (cgroups, mounts, directories).
struct World {
    client: AgentClient<Channel>,
    pods: Arc<TestPods>,
    runtime: Arc<Runtime>,
    _stop: tokio::sync::oneshot::Sender<()>,
    extra: Vec<String>,
    netns: Option<TestNetns>,
    env: RuntimeEnv,
}

impl World {
    async fn new(label: &str) -> Option<World> {
        let env = RuntimeEnv::new(label)?;
        let runtime = Arc::new(
            Runtime::new(
                env.rt().dirs().clone(),
                PathBuf::from(env!("CARGO_BIN_EXE_skiff")),
            )
            .expect("runtime"),
        );
        let pods = Arc::new(TestPods::default());
        let (client, stop) = support::serve(pods.clone(), runtime.clone()).await;
        Some(World {
            client,
            pods,
            runtime,
            _stop: stop,
            extra: Vec::new(),
            netns: None,
            env,
        })
    }

    fn log_dir(&self, name: &str) -> PathBuf {
        self.env.logs.join(name)
    }

    /// Starts instance `attempt` of container `name` running `argv` (logging to
    /// `<log_dir>/<attempt>.log`) and registers it in the pod.
    fn start(&mut self, name: &str, attempt: u32, argv: &[&str]) -> String {
        self.start_with(name, attempt, argv, |_| {})
    }

    fn start_with(
        &mut self,
        name: &str,
        attempt: u32,
        argv: &[&str],
        tweak: impl FnOnce(&mut ContainerConfig),
    ) -> String {
        let mut cfg = self.env.config(&format!("{name}-{attempt}"), argv);
        tweak(&mut cfg);
        cfg.hostname = Some(name.to_string());
        if let Some(ns) = &self.netns {
            cfg.namespaces.network = NamespaceMode::Join(ns.path.clone());
        }
        let spec = spec::build(&ImageDefaults::default(), &cfg).expect("spec");
        let id = self.env.id(&format!("{name}-{attempt}"));
        self.extra.push(id.clone());
        self.runtime
            .create_and_start(CreateRequest {
                id: id.clone(),
                spec,
                layers: vec![self.env.layer.clone()],
                log_path: self.log_dir(name).join(format!("{attempt}.log")),
                log_rotation: LogRotation::default(),
            })
            .unwrap_or_else(|e| panic!("create {name}: {e}"));
        self.pods.set(
            name,
            ContainerRef {
                id: Some(id.clone()),
                log_dir: self.log_dir(name),
                attempt,
            },
        );
        id
    }

    async fn exec(&self, container: &str, command: &[&str]) -> Exec {
        self.exec_with(container, command, false, false).await
    }

    async fn exec_with(&self, container: &str, command: &[&str], stdin: bool, tty: bool) -> Exec {
        match self.try_exec(container, command, stdin, tty).await {
            Ok(e) => e,
            Err(s) => panic!("exec {command:?}: {s:?}"),
        }
    }

    async fn try_exec(
        &self,
        container: &str,
        command: &[&str],
        stdin: bool,
        tty: bool,
    ) -> Result<Exec, tonic::Status> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(ExecInput {
            input: Some(Input::Start(ExecStart {
                namespace: NAMESPACE.into(),
                pod: POD.into(),
                pod_uid: POD_UID.into(),
                container: container.into(),
                command: command.iter().map(|s| s.to_string()).collect(),
                stdin,
                stdout: true,
                stderr: true,
                tty,
            })),
        })
        .await
        .unwrap();
        // A client that leaves ends its input at once rather than after what it queued.
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let input = futures::StreamExt::take_until(ReceiverStream::new(rx), cancelled);
        let out = tokio::time::timeout(T, self.client.clone().exec(input))
            .await
            .expect("exec call timed out")?
            .into_inner();
        Ok(Exec {
            tx: Some(tx),
            _cancel: cancel,
            out,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    async fn logs(
        &self,
        container: &str,
        f: impl FnOnce(&mut LogRequest),
    ) -> Result<String, tonic::Status> {
        let mut req = LogRequest {
            namespace: NAMESPACE.into(),
            pod: POD.into(),
            pod_uid: POD_UID.into(),
            container: container.into(),
            ..Default::default()
        };
        f(&mut req);
        let mut s = self.client.clone().logs(req).await?.into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = tokio::time::timeout(T, s.message())
            .await
            .expect("logs timed out")?
        {
            out.extend_from_slice(&chunk.data);
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for id in &self.extra {
            if let Err(e) = self.runtime.delete(id) {
                eprintln!("[agent_service] deleting {id}: {e}");
            }
        }
        self.netns = None;
    }
}

/// One exec call from the client's side.
struct Exec {
    tx: Option<mpsc::Sender<ExecInput>>,
    _cancel: tokio::sync::oneshot::Sender<()>,
    out: tonic::Streaming<skiff_proto::agent::ExecOutput>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl Exec {
    async fn send(&self, input: Input) {
        if let Some(tx) = &self.tx {
            tx.send(ExecInput { input: Some(input) }).await.unwrap();
        }
    }

    /// Reads outputs until the exit code (which must be the last message).
    async fn finish(&mut self) -> i32 {
        let deadline = tokio::time::Instant::now() + T;
        loop {
            let msg = tokio::time::timeout_at(deadline, self.out.message())
                .await
                .expect("exec did not finish in time")
                .expect("exec stream failed")
                .expect("exec stream ended without an exit code");
            match msg.output {
                Some(Output::Stdout(d)) => self.stdout.extend_from_slice(&d),
                Some(Output::Stderr(d)) => self.stderr.extend_from_slice(&d),
                Some(Output::ExitCode(c)) => {
                    let after = tokio::time::timeout(T, self.out.message())
                        .await
                        .expect("end");
                    assert!(
                        matches!(after, Ok(None)),
                        "output after the exit code: {after:?}"
                    );
                    return c;
                }
                None => {}
            }
        }
    }

    /// Reads stdout until it contains `want`.
    async fn read_until(&mut self, want: &str) {
        let deadline = tokio::time::Instant::now() + T;
        while !String::from_utf8_lossy(&self.stdout).contains(want) {
            let Ok(next) = tokio::time::timeout_at(deadline, self.out.message()).await else {
                panic!("no {want:?} in {:?}", String::from_utf8_lossy(&self.stdout))
            };
            let msg = next
                .expect("exec stream failed")
                .expect("exec stream ended");
            match msg.output {
                Some(Output::Stdout(d)) => self.stdout.extend_from_slice(&d),
                Some(Output::Stderr(d)) => self.stderr.extend_from_slice(&d),
                other => panic!("unexpected {other:?} while waiting for {want:?}"),
            }
        }
    }

    fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
async fn eventually<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_pipes() {
    let Some(mut w) = World::new("svc-exec").await else {
        return;
    };
    let id = w.start("main", 0, &["sleep", "3600"]);
    let init_pid = w.runtime.state(&id).unwrap().pid.expect("init pid");

    // Output, and the command runs in the container's namespaces and environment.
    let mut e = w
        .exec(
            "main",
            &["sh", "-c", "echo hello; hostname; readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; echo $PATH"],
        )
        .await;
    assert_eq!(e.finish().await, 0);
    let ns_of = |kind: &str| {
        std::fs::read_link(format!("/proc/{init_pid}/ns/{kind}"))
            .unwrap()
            .to_string_lossy()
            .into_owned()
    };
    assert_eq!(
        e.out(),
        format!(
            "hello\nmain\n{}\n{}\n/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
            ns_of("pid"),
            ns_of("mnt")
        )
    );
    assert_eq!(e.err(), "");

    // The container's capabilities (runc's default set, not the agent's full one).
    let cap_eff = |pid: i32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap()
            .lines()
            .find(|l| l.starts_with("CapEff"))
            .unwrap()
            .to_string()
    };
    let mut e = w
        .exec("main", &["grep", "CapEff", "/proc/self/status"])
        .await;
    assert_eq!(e.finish().await, 0);
    assert_eq!(e.out(), format!("{}\n", cap_eff(init_pid)));
    assert_ne!(cap_eff(init_pid), cap_eff(std::process::id() as i32));

    // The container's user, groups, working directory, environment and cgroup are the
    // command's too.
    let uid = w.start_with("user", 0, &["sleep", "3600"], |c| {
        c.user.uid = Some(1000);
        c.user.gid = Some(1001);
        c.working_dir = Some("/tmp".into());
        c.env = vec![("FOO".into(), "bar".into())];
    });
    let user_init = w.runtime.state(&uid).unwrap().pid.expect("init pid");
    let mut e = w
        .exec(
            "user",
            &["sh", "-c", "id -u; id -g; pwd; echo $FOO; grep CapEff /proc/self/status; cat /proc/self/cgroup"],
        )
        .await;
    assert_eq!(e.finish().await, 0, "{}", e.err());
    let out = e.out();
    let init_caps = cap_eff(user_init);
    assert!(
        out.starts_with(&format!("1000\n1001\n/tmp\nbar\n{init_caps}\n")),
        "{out}"
    );
    let cgroup = format!("{}/user-0", w.env.cgroup_parent);
    assert!(
        out.lines().any(|l| l.ends_with(&format!(":{cgroup}"))),
        "not in {cgroup}:\n{out}"
    );

    // stdin to cat, closed by close_stdin.
    let mut e = w.exec_with("main", &["cat"], true, false).await;
    e.send(Input::Stdin(b"abc\n".to_vec())).await;
    e.send(Input::Stdin(b"def".to_vec())).await;
    e.send(Input::CloseStdin(true)).await;
    assert_eq!(e.finish().await, 0);
    assert_eq!(e.out(), "abc\ndef");

    // stderr and a non-zero exit code.
    let mut e = w.exec("main", &["sh", "-c", "echo oops >&2; exit 3"]).await;
    assert_eq!(e.finish().await, 3);
    assert_eq!((e.out().as_str(), e.err().as_str()), ("", "oops\n"));

    // A command that does not exist fails the call, with runc's wording.
    let err = w
        .try_exec("main", &["nope"], false, false)
        .await
        .err()
        .expect("nope must fail");
    assert!(
        err.message()
            .contains("exec: \"nope\": executable file not found in $PATH"),
        "{err:?}"
    );
    // A container the pod does not have.
    let err = w
        .try_exec("other", &["true"], false, false)
        .await
        .err()
        .expect("no container");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // A client that goes away takes its command with it.
    let mut e = w
        .exec_with(
            "main",
            &["sh", "-c", "echo started; exec sleep 1000"],
            true,
            false,
        )
        .await;
    e.read_until("started").await;
    drop(e);
    let rt = w.runtime.clone();
    let cid = id.clone();
    let gone = eventually(T, || {
        let rt = rt.clone();
        let cid = cid.clone();
        async move {
            let (_, out) = tokio::task::spawn_blocking(move || {
                rt.exec_capture(&cid, &["ps".to_string()], T).unwrap()
            })
            .await
            .unwrap();
            !String::from_utf8_lossy(&out).contains("sleep 1000")
        }
    })
    .await;
    assert!(gone, "the exec'd sleep survived its client");

    // exec_capture: both streams, the exit code, and a timeout that kills.
    let rt = w.runtime.clone();
    let cid = id.clone();
    let (code, out, timed_out, left) = tokio::task::spawn_blocking(move || {
        let (code, out) = rt
            .exec_capture(
                &cid,
                &[
                    "sh".into(),
                    "-c".into(),
                    "echo out; echo err >&2; exit 4".into(),
                ],
                T,
            )
            .unwrap();
        let started = Instant::now();
        let timed_out = rt.exec_capture(
            &cid,
            &["sh".into(), "-c".into(), "exec sleep 777".into()],
            Duration::from_millis(500),
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        let (_, ps) = rt.exec_capture(&cid, &["ps".into()], T).unwrap();
        (
            code,
            out,
            timed_out,
            String::from_utf8_lossy(&ps).into_owned(),
        )
    })
    .await
    .unwrap();
    assert_eq!(code, 4);
    assert_eq!(String::from_utf8_lossy(&out), "out\nerr\n");
    assert!(
        matches!(timed_out, Err(RuntimeError::ExecTimeout(..))),
        "{timed_out:?}"
    );
    assert!(
        !left.contains("sleep 777"),
        "timed-out command still runs:\n{left}"
    );

    // No per-exec files are left in libcontainer's state or the bundle.
    let state = w.env.rt().dirs().state.join(&id);
    let bundle = w.env.rt().dirs().bundles.join(&id);
    for dir in [state, bundle] {
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("tenant-") || n.starts_with("exec-"))
            .collect();
        assert!(names.is_empty(), "left in {dir:?}: {names:?}");
    }

    // Once the container has exited, exec is refused.
    w.runtime.kill(&id, libc::SIGKILL).unwrap();
    w.runtime.wait(&id, T).unwrap();
    let err = w
        .try_exec("main", &["true"], false, false)
        .await
        .err()
        .expect("stopped");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_a_terminal() {
    let Some(mut w) = World::new("svc-tty").await else {
        return;
    };
    w.start("main", 0, &["sleep", "3600"]);

    // The command has a terminal as stdin and stdout, and a resize sent before its input
    // is in effect when it reads the input.
    let mut e = w
        .exec_with(
            "main",
            &[
                "sh",
                "-c",
                "test -t 0 && test -t 1 && echo is-a-tty; tty; read x; stty size",
            ],
            true,
            true,
        )
        .await;
    e.read_until("is-a-tty").await;
    e.send(Input::Resize(TerminalSize {
        width: 123,
        height: 45,
    }))
    .await;
    e.send(Input::Stdin(b"go\n".to_vec())).await;
    assert_eq!(e.finish().await, 0);
    let out = e.out();
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert!(out.contains("45 123"), "{out:?}");
    // A terminal turns newlines into CRLF, and it merges stderr into stdout.
    assert!(out.contains("is-a-tty\r\n"), "{out:?}");
    assert_eq!(e.err(), "");

    // Closing stdin on a terminal is end of file (^D) for the command.
    let mut e = w.exec_with("main", &["cat"], true, true).await;
    e.send(Input::Stdin(b"typed\n".to_vec())).await;
    e.read_until("typed").await;
    e.send(Input::CloseStdin(true)).await;
    assert_eq!(e.finish().await, 0);

    // The command is the terminal's session leader: job control works (Ctrl-C reaches it).
    let mut e = w
        .exec_with(
            "main",
            &["sh", "-c", "echo ready; exec sleep 1000"],
            true,
            true,
        )
        .await;
    e.read_until("ready").await;
    e.send(Input::Stdin(vec![0x03])).await;
    assert_eq!(e.finish().await, 128 + libc::SIGINT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_tail_timestamps_follow_previous() {
    let Some(mut w) = World::new("svc-logs").await else {
        return;
    };
    // Instance 0 runs to completion.
    let first = w.start("app", 0, &["sh", "-c", "echo first-run; echo bye >&2"]);
    w.runtime.wait(&first, T).unwrap();
    // No earlier instance than 0.
    let err = w
        .logs("app", |r| r.previous = true)
        .await
        .expect_err("no previous");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "previous terminated container \"app\" in pod \"p1\" not found"
    );

    // Instance 1 (a restart) prints three lines, then waits for a file before printing two
    // more and exiting.
    let script = "echo one; echo two; echo three; \
                  while [ ! -f /tmp/go ]; do sleep 0.05; done; echo four; echo five";
    w.start("app", 1, &["sh", "-c", script]);
    let ready = eventually(T, || async {
        w.logs("app", |_| {}).await.unwrap() == "one\ntwo\nthree\n"
    })
    .await;
    assert!(ready, "{:?}", w.logs("app", |_| {}).await);

    assert_eq!(
        w.logs("app", |r| r.previous = true).await.unwrap(),
        "first-run\nbye\n"
    );
    assert_eq!(
        w.logs("app", |r| r.tail_lines = Some(2)).await.unwrap(),
        "two\nthree\n"
    );
    assert_eq!(w.logs("app", |r| r.tail_lines = Some(0)).await.unwrap(), "");
    assert_eq!(
        w.logs("app", |r| r.limit_bytes = Some(6)).await.unwrap(),
        "one\ntw"
    );
    assert_eq!(
        w.logs("app", |r| r.since_seconds = Some(3600))
            .await
            .unwrap(),
        "one\ntwo\nthree\n"
    );
    let stamped = w.logs("app", |r| r.timestamps = true).await.unwrap();
    let lines: Vec<&str> = stamped.lines().collect();
    assert_eq!(lines.len(), 3, "{stamped}");
    for (line, want) in lines.iter().zip(["one", "two", "three"]) {
        let (ts, msg) = line.split_once(' ').unwrap();
        assert_eq!(msg, want);
        assert!(
            ts.len() >= 20
                && ts.ends_with('Z')
                && ts.as_bytes()[10] == b'T'
                && ts.starts_with("20"),
            "{line}"
        );
    }

    // Follow: the existing lines, then new ones, and the end when the container exits.
    let mut req = LogRequest {
        namespace: NAMESPACE.into(),
        pod: POD.into(),
        pod_uid: POD_UID.into(),
        container: "app".into(),
        follow: true,
        ..Default::default()
    };
    req.tail_lines = Some(1);
    let mut s = w.client.clone().logs(req).await.unwrap().into_inner();
    let mut got = String::new();
    let deadline = tokio::time::Instant::now() + T;
    while got != "three\n" {
        let c = tokio::time::timeout_at(deadline, s.message())
            .await
            .expect("follow: first lines")
            .unwrap()
            .expect("follow ended early");
        got.push_str(&String::from_utf8_lossy(&c.data));
    }
    let mut touch = w.exec("app", &["touch", "/tmp/go"]).await;
    assert_eq!(touch.finish().await, 0);
    while let Some(c) = tokio::time::timeout_at(deadline, s.message())
        .await
        .expect("follow did not end after the container exited")
        .unwrap()
    {
        got.push_str(&String::from_utf8_lossy(&c.data));
    }
    assert_eq!(got, "three\nfour\nfive\n");

    // A container that never started has no logs yet.
    w.pods.set(
        "waiting",
        ContainerRef {
            id: None,
            log_dir: w.log_dir("waiting"),
            attempt: 0,
        },
    );
    let err = w.logs("waiting", |_| {}).await.expect_err("waiting");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("is waiting to start"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_into_the_pod_network() {
    let Some(mut w) = World::new("svc-pf").await else {
        return;
    };
    w.netns = Some(TestNetns::new(w.env.dir.path()));
    *w.pods.netns.lock().unwrap() = w.netns.as_ref().map(|n| n.path.clone());
    w.start(
        "web",
        0,
        &[
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www",
        ],
    );

    let start = |port: u32, pod: &str| PortForwardInput {
        input: Some(PfInput::Start(PortForwardStart {
            namespace: NAMESPACE.into(),
            pod: pod.into(),
            pod_uid: POD_UID.into(),
            port,
        })),
    };
    // An HTTP request through the forwarded connection; the end of our input half-closes
    // it, the server answers and closes, and that ends the output. Retried until httpd
    // listens.
    let deadline = Instant::now() + T;
    let response = loop {
        let req = PortForwardInput {
            input: Some(PfInput::Data(b"GET /index.html HTTP/1.0\r\n\r\n".to_vec())),
        };
        let input = tokio_stream::iter(vec![start(8080, POD), req]);
        if let Ok(resp) = w.client.clone().port_forward(input).await {
            let mut s = resp.into_inner();
            let mut out = Vec::new();
            while let Ok(Some(c)) = tokio::time::timeout(T, s.message()).await.expect("pf read") {
                out.extend_from_slice(&c.data);
            }
            if !out.is_empty() {
                break String::from_utf8_lossy(&out).into_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "httpd never answered through port-forward"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.ends_with("hello-from-pod\n"), "{response}");

    // Nothing listens on 8081: the call fails with upstream's wording.
    let err = w
        .client
        .clone()
        .port_forward(tokio_stream::iter(vec![start(8081, POD)]))
        .await
        .expect_err("refused");
    assert!(
        err.message()
            .contains("error forwarding port 8081 to pod default/p1, uid u1")
            && err.message().contains("connection refused"),
        "{err:?}"
    );
    // A pod this node does not run.
    let err = w
        .client
        .clone()
        .port_forward(tokio_stream::iter(vec![start(8080, "p2")]))
        .await
        .expect_err("no pod");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
}
