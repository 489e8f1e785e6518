//! End-to-end test harness: spawns `skiff store` members as real processes on
//! loopback addresses, talks to them with `etcdctl`, and cuts the network
//! between them with nftables.
//!
//! Std only (no external crates) so it compiles on its own:
//!   rustc --edition 2021 --crate-type lib tests/common/cluster.rs
//!
//! Layout of a cluster with n members:
//!   member i (0-based) is named `m{i}` and listens on 127.0.0.(11+i) for both
//!   its client port and its peer port. Ports come from a per-process base
//!   (derived from the pid) below the kernel's ephemeral range, are unique
//!   within the process, and are checked to be bindable before use.
//!   Files: `<root>/m{i}/data` (the --data-dir, created empty) and
//!   `<root>/m{i}/member.log` (stdout+stderr of every run of that member).
//!
//! Cleanup: `Drop` for `Cluster` SIGKILLs every member still running and
//! deletes every nftables table the cluster created, also when the test
//! panics (it then prints the tail of every member log). Leftovers of test
//! processes that were themselves SIGKILLed (member processes, nft tables,
//! temp dirs) are reaped by the next `Cluster::start` in any test process.
//!
//! Environment knobs (all optional):
//!   SKIFF_TEST_BIN=path            binary to run instead of CARGO_BIN_EXE_skiff
//!   SKIFF_TEST_REFERENCE_ETCD=path run a real etcd (e.g. /usr/bin/etcd) instead
//!                                  of skiff, to check the tests themselves
//!                                  against the reference implementation
//!   SKIFF_TEST_KEEP=1              keep the temp dir (logs, data) after the test
//!   SKIFF_TEST_LOG_LINES=N         lines of each member log printed on failure (80)

use std::collections::HashSet;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ---------------------------------------------------------------------------
// Skip logic and small helpers
// ---------------------------------------------------------------------------

fn in_ci() -> bool {
    matches!(std::env::var("CI"), Ok(v) if !v.is_empty() && v != "0" && v != "false")
}

fn skip(test_name: &str, why: &str) -> bool {
    let msg = format!(
        "\n##########################################################################\n\
         ### SKIPPED: {test_name} {why}\n\
         ##########################################################################\n"
    );
    if in_ci() {
        // In CI everything must be there: a skip would hide a test silently.
        panic!("{msg}(CI is set, so this is a failure rather than a skip)");
    }
    eprintln!("{msg}");
    false
}

/// Effective uid of this process, from /proc/self/status (no libc).
pub fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

pub fn is_root() -> bool {
    effective_uid() == Some(0)
}

/// True when running as root. Otherwise prints a loud SKIPPED message to
/// stderr and returns false (the test should `return`). When the CI
/// environment variable is set it panics instead: CI runs as root.
pub fn require_root(test_name: &str) -> bool {
    if is_root() {
        return true;
    }
    skip(
        test_name,
        "needs root (nftables partitions); run the tests as root to include it",
    )
}

/// Whether `tool` is an executable on PATH.
pub fn tool_exists(tool: &str) -> bool {
    if tool.contains('/') {
        return is_executable(Path::new(tool));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(tool)))
        // nft lives in /usr/sbin, which a non-root PATH may lack.
        || ["/usr/sbin", "/sbin"].iter().any(|d| is_executable(&Path::new(d).join(tool)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// True when `tool` is on PATH; otherwise a loud SKIPPED message and false
/// (a panic when CI is set). See deploy/install-deps.sh for where tools come from.
pub fn require_tool(test_name: &str, tool: &str) -> bool {
    if tool_exists(tool) {
        return true;
    }
    skip(
        test_name,
        &format!("needs `{tool}` on PATH (run deploy/install-deps.sh as root to install it)"),
    )
}

/// Polls `cond` every `interval` until it returns true or `timeout` passes.
/// Returns whether it became true. `cond` is always called at least once, and
/// once more right at the deadline.
pub fn wait_until(timeout: Duration, interval: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        thread::sleep(interval.min(deadline - now));
    }
}

/// Like `wait_until` but `f` returns `Ok(value)` when done or `Err(reason)`;
/// on timeout returns the last reason (for a useful panic message).
pub fn wait_for<T>(
    timeout: Duration,
    interval: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let err = match f() {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(format!("timed out after {timeout:?}; last: {err}"));
        }
        thread::sleep(interval.min(deadline - now));
    }
}

/// Runs `cmd` (stdout/stderr captured), feeding `stdin` if given, killing it
/// after `timeout`. A timed-out command gets a non-success status (killed) and
/// a note appended to its stderr.
pub fn run_with_timeout(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
    if let Some(data) = stdin {
        let mut w = child.stdin.take().unwrap();
        let data = data.to_vec();
        // A writer thread: the child may not read all of stdin.
        thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    }
    let out_reader = spawn_reader(child.stdout.take().unwrap());
    let err_reader = spawn_reader(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().expect("wait after kill");
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("waiting for {cmd:?}: {e}"),
        }
    };
    let stdout = out_reader.join().unwrap_or_default();
    let mut stderr = err_reader.join().unwrap_or_default();
    if timed_out {
        stderr.extend_from_slice(format!("\n[harness: killed after {timeout:?}]\n").as_bytes());
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

fn spawn_reader<R: Read + Send + 'static>(mut r: R) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Human-readable dump of a command's result, for assertion messages.
pub fn describe(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}--- stderr ---\n{}--------------",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn stdout_str(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Panics (with the full output) unless the command succeeded; returns stdout.
pub fn check_ok(what: &str, out: &Output) -> String {
    assert!(out.status.success(), "{what} failed:\n{}", describe(out));
    stdout_str(out)
}

/// A line reader with deadlines over a child's stdout (e.g. `etcdctl watch`).
/// The child is killed on drop.
pub struct LineReader {
    child: Child,
    rx: mpsc::Receiver<String>,
    /// Every line received so far (for failure messages).
    pub seen: Vec<String>,
    stderr_path: Option<PathBuf>,
}

impl LineReader {
    /// Spawns `cmd` with stdout piped and stderr sent to `stderr_path` (if
    /// given; otherwise discarded).
    pub fn spawn(cmd: &mut Command, stderr_path: Option<PathBuf>) -> LineReader {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        match &stderr_path {
            Some(p) => {
                cmd.stderr(File::create(p).expect("create stderr file"));
            }
            None => {
                cmd.stderr(Stdio::null());
            }
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(l).is_err() {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
        });
        LineReader {
            child,
            rx,
            seen: Vec::new(),
            stderr_path,
        }
    }

    /// Next line, or None when `timeout` passes or the stream ends first.
    pub fn next_line(&mut self, timeout: Duration) -> Option<String> {
        match self.rx.recv_timeout(timeout) {
            Ok(l) => {
                self.seen.push(l.clone());
                Some(l)
            }
            Err(_) => None,
        }
    }

    /// Reads lines until `expected` has been received in order (as the next
    /// lines), panicking with everything seen if the deadline passes or a
    /// line differs.
    pub fn expect_lines(&mut self, expected: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        for want in expected {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_line(left) {
                Some(got) if got == *want => {}
                Some(got) => panic!(
                    "expected line {want:?}, got {got:?}; all lines so far: {:?}{}",
                    self.seen,
                    self.stderr_tail()
                ),
                None => panic!(
                    "timed out after {timeout:?} waiting for line {want:?}; lines so far: {:?}{}",
                    self.seen,
                    self.stderr_tail()
                ),
            }
        }
    }

    fn stderr_tail(&self) -> String {
        match &self.stderr_path {
            Some(p) => format!("\nstderr:\n{}", tail_file(p, 30)),
            None => String::new(),
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for LineReader {
    fn drop(&mut self) {
        self.kill();
    }
}

fn tail_file(p: &Path, lines: usize) -> String {
    match fs::read(p) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(lines);
            let mut s = String::new();
            if start > 0 {
                let _ = writeln!(s, "[... {start} earlier lines in {}]", p.display());
            }
            for l in &all[start..] {
                s.push_str(l);
                s.push('\n');
            }
            s
        }
        Err(e) => format!("[cannot read {}: {e}]\n", p.display()),
    }
}

// ---------------------------------------------------------------------------
// A tiny JSON reader (for `etcdctl ... -w json`), numbers kept as text so
// u64 ids survive.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's literal text.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(s: &str) -> Result<Json, String> {
        let mut p = JsonParser {
            b: s.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.b.len() {
            return Err(format!("trailing characters at {} in {s:?}", p.i));
        }
        Ok(v)
    }

    /// Field of an object (None if absent or not an object).
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a path of object keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Json> {
        keys.iter().try_fold(self, |v, k| v.get(k))
    }

    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Num(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Num(n) => n.parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Json::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Json]> {
        match self {
            Json::Arr(a) => Some(a),
            _ => None,
        }
    }
}

struct JsonParser<'a> {
    b: &'a [u8],
    i: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("JSON: {what} at byte {}", self.i))
    }

    fn lit(&mut self, word: &str, v: Json) -> Result<Json, String> {
        if self.b[self.i..].starts_with(word.as_bytes()) {
            self.i += word.len();
            Ok(v)
        } else {
            self.err("bad literal")
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.b.get(self.i) {
            None => self.err("unexpected end"),
            Some(b'n') => self.lit("null", Json::Null),
            Some(b't') => self.lit("true", Json::Bool(true)),
            Some(b'f') => self.lit("false", Json::Bool(false)),
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return self.err("expected , or ]"),
                    }
                }
            }
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(fields));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return self.err("expected key");
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return self.err("expected :");
                    }
                    self.i += 1;
                    let v = self.value()?;
                    fields.push((k, v));
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(fields));
                        }
                        _ => return self.err("expected , or }"),
                    }
                }
            }
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self.i < self.b.len()
                    && matches!(
                        self.b[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                Ok(Json::Num(
                    String::from_utf8_lossy(&self.b[start..self.i]).into_owned(),
                ))
            }
            Some(_) => self.err("unexpected character"),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.i += 1; // opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.b.get(self.i) {
                None => return self.err("unterminated string"),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    self.i += 1;
                    let c = match self.b.get(self.i) {
                        Some(c) => *c,
                        None => return self.err("bad escape"),
                    };
                    self.i += 1;
                    match c {
                        b'"' => out.push(b'"'),
                        b'\\' => out.push(b'\\'),
                        b'/' => out.push(b'/'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'u' => {
                            let hex = self.b.get(self.i..self.i + 4).ok_or("JSON: short \\u")?;
                            let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
                            let mut cp = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                            self.i += 4;
                            // Surrogate pair.
                            if (0xD800..0xDC00).contains(&cp)
                                && self.b.get(self.i..self.i + 2) == Some(b"\\u")
                            {
                                if let Some(lo) = self
                                    .b
                                    .get(self.i + 2..self.i + 6)
                                    .and_then(|h| std::str::from_utf8(h).ok())
                                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                                {
                                    if (0xDC00..0xE000).contains(&lo) {
                                        cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                        self.i += 6;
                                    }
                                }
                            }
                            let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                        }
                        _ => return self.err("bad escape"),
                    }
                }
                Some(c) => {
                    out.push(*c);
                    self.i += 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Process-wide bookkeeping: ports, names, stale leftovers
// ---------------------------------------------------------------------------

/// Environment variable put on every member process: the pid of the test
/// process that owns it (used to reap members of dead test processes).
pub const OWNER_ENV: &str = "SKIFF_TEST_OWNER_PID";
const TMP_PREFIX: &str = "skiff-test-";
const NFT_PREFIX: &str = "skiff_test_";

/// Ports handed out lie in [PORT_LO, PORT_HI): below the kernel's ephemeral
/// range (32768+), so they never collide with the source port of an outgoing
/// connection, which keeps the port-qualified nftables rules exact.
const PORT_LO: u32 = 10_000;
const PORT_HI: u32 = 32_000;

static PORT_COUNTER: AtomicU32 = AtomicU32::new(0);
static SEQ: AtomicU32 = AtomicU32::new(0);

/// Per-process base: test binaries running at the same time start far apart.
fn port_base() -> u32 {
    let pid = std::process::id();
    let slots = (PORT_HI - PORT_LO) / 100; // 220 slots of 100 ports
    PORT_LO + (pid.wrapping_mul(2_654_435_761) >> 7) % slots * 100
}

fn port_free(ip: Ipv4Addr, port: u16) -> bool {
    // Listening on the exact IP fails if anything listens on ip:port or
    // 0.0.0.0:port.
    TcpListener::bind((ip, port)).is_ok()
}

/// A port unique within this process and currently free on `ip`.
pub fn alloc_port(ip: Ipv4Addr) -> u16 {
    let base = port_base();
    for _ in 0..(PORT_HI - PORT_LO) {
        let n = PORT_COUNTER.fetch_add(1, Ordering::Relaxed);
        let port = PORT_LO + (base - PORT_LO + n) % (PORT_HI - PORT_LO);
        if port_free(ip, port as u16) {
            return port as u16;
        }
    }
    panic!("no free port on {ip}");
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn nft_bin() -> String {
    for p in ["/usr/sbin/nft", "/sbin/nft"] {
        if is_executable(Path::new(p)) {
            return p.to_string();
        }
    }
    "nft".to_string()
}

/// Runs an nft script via `nft -f -`.
pub fn nft_script(script: &str) -> Result<(), String> {
    let out = run_with_timeout(
        Command::new(nft_bin()).args(["-f", "-"]),
        Some(script.as_bytes()),
        Duration::from_secs(20),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft -f - failed for script:\n{script}\n{}",
            describe(&out)
        ))
    }
}

fn nft_delete_table(name: &str) -> Result<(), String> {
    let out = run_with_timeout(
        Command::new(nft_bin()).args(["delete", "table", "inet", name]),
        None,
        Duration::from_secs(20),
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft delete table inet {name} failed:\n{}",
            describe(&out)
        ))
    }
}

/// Names of the `inet` tables whose name starts with `skiff_test_`.
pub fn nft_test_tables() -> Vec<String> {
    if !is_root() || !tool_exists("nft") {
        return Vec::new();
    }
    let out = run_with_timeout(
        Command::new(nft_bin()).args(["list", "tables", "inet"]),
        None,
        Duration::from_secs(20),
    );
    stdout_str(&out)
        .lines()
        .filter_map(|l| l.trim().strip_prefix("table inet "))
        .filter(|n| n.starts_with(NFT_PREFIX))
        .map(str::to_string)
        .collect()
}

/// Reaps what test processes that died without cleaning up left behind:
/// member processes, nft tables and temp dirs whose owner pid is gone.
/// Runs once per test process, from `Cluster::start`.
pub fn reap_stale_leftovers() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // 1. Member processes.
        if let Ok(dir) = fs::read_dir("/proc") {
            for e in dir.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let Ok(env) = fs::read(e.path().join("environ")) else {
                    continue;
                };
                let needle = format!("{OWNER_ENV}=");
                let owner = env
                    .split(|b| *b == 0)
                    .filter_map(|kv| std::str::from_utf8(kv).ok())
                    .find_map(|kv| kv.strip_prefix(needle.as_str()))
                    .and_then(|v| v.parse::<u32>().ok());
                if let Some(owner) = owner {
                    if owner != std::process::id() && !pid_alive(owner) {
                        eprintln!(
                            "[harness] killing stale member process {pid} (owner {owner} is gone)"
                        );
                        let _ = Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                    }
                }
            }
        }
        // 2. nft tables named skiff_test_<pid>_<n>.
        for t in nft_test_tables() {
            let owner = t
                .strip_prefix(NFT_PREFIX)
                .and_then(|r| r.split('_').next())
                .and_then(|p| p.parse::<u32>().ok());
            if let Some(owner) = owner {
                if owner != std::process::id() && !pid_alive(owner) {
                    eprintln!("[harness] deleting stale nft table inet {t}");
                    let _ = nft_delete_table(&t);
                }
            }
        }
        // 3. Temp dirs named skiff-test-<pid>-...
        if let Ok(dir) = fs::read_dir(std::env::temp_dir()) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let owner = name
                    .strip_prefix(TMP_PREFIX)
                    .and_then(|r| r.split('-').next())
                    .and_then(|p| p.parse::<u32>().ok());
                if let Some(owner) = owner {
                    if owner != std::process::id()
                        && !pid_alive(owner)
                        && std::env::var_os("SKIFF_TEST_KEEP").is_none()
                    {
                        let _ = fs::remove_dir_all(e.path());
                    }
                }
            }
        }
    });
}

/// A temp directory removed on drop (unless SKIFF_TEST_KEEP is set).
pub struct TestDir {
    path: PathBuf,
}

impl TestDir {
    pub fn new(label: &str) -> TestDir {
        let path = std::env::temp_dir().join(format!(
            "{TMP_PREFIX}{}-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            unix_nanos() % 1_000_000_000,
            label
        ));
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        TestDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("SKIFF_TEST_KEEP").is_some() {
            eprintln!("[harness] keeping {}", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// Options for `Cluster::start`.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    /// `--snapshot-count N` (applied entries between log compactions).
    pub snapshot_count: Option<u64>,
    /// Extra arguments appended to every member's command line.
    pub extra_args: Vec<String>,
    /// Extra environment for every member (e.g. RUST_LOG).
    pub env: Vec<(String, String)>,
    /// Whether `start` waits for a healthy cluster with a leader.
    pub wait_ready: bool,
    /// How long `start` waits for that.
    pub ready_timeout: Duration,
    /// Label used in the temp dir name.
    pub label: String,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            snapshot_count: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            wait_ready: true,
            ready_timeout: Duration::from_secs(30),
            label: "cluster".to_string(),
        }
    }
}

impl ClusterOptions {
    pub fn snapshot_count(mut self, n: u64) -> Self {
        self.snapshot_count = Some(n);
        self
    }
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.extra_args.push(a.into());
        self
    }
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn no_wait(mut self) -> Self {
        self.wait_ready = false;
        self
    }
    pub fn label(mut self, l: impl Into<String>) -> Self {
        self.label = l.into();
        self
    }
}

/// One member of a `Cluster`.
#[derive(Debug)]
pub struct Member {
    pub index: usize,
    pub name: String,
    pub ip: Ipv4Addr,
    pub client_port: u16,
    pub peer_port: u16,
    /// http://IP:CLIENT_PORT
    pub client_url: String,
    /// http://IP:PEER_PORT
    pub peer_url: String,
    /// `<root>/<name>/data`
    pub data_dir: PathBuf,
    /// `<root>/<name>/member.log`: stdout+stderr of every run, appended.
    pub log_path: PathBuf,
    /// The --initial-cluster this member was first started with.
    pub initial_cluster: String,
    /// "new" or "existing", as first started.
    pub initial_state: &'static str,
    /// Was added as a learner (and not promoted through the harness).
    pub learner: bool,
    /// Removed from the cluster through `remove_member`.
    pub removed: bool,
    /// Raft member id, once learned from `endpoint status`.
    pub id: Option<u64>,
    /// How many times this member's process was started.
    pub starts: u32,
    child: Option<Child>,
}

impl Member {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }
}

/// The process under test: skiff, or (for checking the tests) real etcd.
#[derive(Clone, Debug)]
enum Flavor {
    Skiff(PathBuf),
    Etcd(PathBuf),
}

fn flavor() -> Flavor {
    if let Some(p) = std::env::var_os("SKIFF_TEST_REFERENCE_ETCD").filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        let p = if p.as_os_str() == "1" {
            PathBuf::from("etcd")
        } else {
            p
        };
        return Flavor::Etcd(p);
    }
    if let Some(p) = std::env::var_os("SKIFF_TEST_BIN").filter(|v| !v.is_empty()) {
        return Flavor::Skiff(PathBuf::from(p));
    }
    Flavor::Skiff(PathBuf::from(env!("CARGO_BIN_EXE_skiff")))
}

/// Whether the harness runs real etcd instead of skiff (SKIFF_TEST_REFERENCE_ETCD).
pub fn reference_etcd() -> bool {
    matches!(flavor(), Flavor::Etcd(_))
}

/// A running cluster of store members. Dropping it kills every member and
/// removes every partition it created.
pub struct Cluster {
    members: Vec<Member>,
    opts: ClusterOptions,
    flavor: Flavor,
    partitions: Arc<Mutex<HashSet<String>>>,
    /// Default etcdctl --command-timeout.
    pub command_timeout: Duration,
    // Last field: dropped after the members are killed.
    root: TestDir,
}

impl Cluster {
    /// Starts `n` members as a new cluster and (unless `opts.no_wait()`)
    /// waits until it is healthy and has a leader, panicking with the member
    /// logs if it does not get there within `opts.ready_timeout`.
    pub fn start(n: usize, opts: ClusterOptions) -> Cluster {
        assert!((1..=200).contains(&n), "cluster size {n}");
        reap_stale_leftovers();
        let flavor = flavor();
        if let Flavor::Skiff(p) = &flavor {
            assert!(
                p.exists(),
                "binary {} does not exist (build it: cargo build)",
                p.display()
            );
        }
        let root = TestDir::new(&opts.label);
        let mut members = Vec::with_capacity(n);
        for i in 0..n {
            members.push(Self::new_member(root.path(), i, String::new(), "new"));
        }
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial_cluster.clone();
        }
        let mut c = Cluster {
            members,
            opts,
            flavor,
            partitions: Arc::new(Mutex::new(HashSet::new())),
            command_timeout: Duration::from_secs(5),
            root,
        };
        for i in 0..n {
            c.spawn_member(i);
        }
        if c.opts.wait_ready {
            let t = c.opts.ready_timeout;
            c.wait_leader(t);
        }
        c
    }

    fn new_member(
        root: &Path,
        index: usize,
        initial_cluster: String,
        state: &'static str,
    ) -> Member {
        let host = 11 + index;
        assert!(host <= 254, "too many members");
        let ip = Ipv4Addr::new(127, 0, 0, host as u8);
        let name = format!("m{index}");
        let client_port = alloc_port(ip);
        let peer_port = alloc_port(ip);
        let dir = root.join(&name);
        let data_dir = dir.join("data");
        fs::create_dir_all(&data_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", data_dir.display()));
        Member {
            index,
            log_path: dir.join("member.log"),
            name,
            ip,
            client_port,
            peer_port,
            client_url: format!("http://{ip}:{client_port}"),
            peer_url: format!("http://{ip}:{peer_port}"),
            data_dir,
            initial_cluster,
            initial_state: state,
            learner: false,
            removed: false,
            id: None,
            starts: 0,
            child: None,
        }
    }

    /// The command line (program + args) used for member `i`.
    pub fn command_line(&self, i: usize) -> (PathBuf, Vec<String>) {
        let m = &self.members[i];
        let mut args: Vec<String> = Vec::new();
        let prog = match &self.flavor {
            Flavor::Skiff(p) => {
                args.extend(
                    [
                        "store",
                        "--name",
                        &m.name,
                        "--data-dir",
                        &m.data_dir.to_string_lossy(),
                        "--listen-client",
                        &m.client_url,
                        "--listen-peer",
                        &m.peer_url,
                        "--initial-cluster",
                        &m.initial_cluster,
                        "--initial-cluster-state",
                        m.initial_state,
                    ]
                    .iter()
                    .map(|s| s.to_string()),
                );
                p.clone()
            }
            Flavor::Etcd(p) => {
                args.extend(
                    [
                        "--name",
                        &m.name,
                        "--data-dir",
                        &m.data_dir.to_string_lossy(),
                        "--listen-client-urls",
                        &m.client_url,
                        "--advertise-client-urls",
                        &m.client_url,
                        "--listen-peer-urls",
                        &m.peer_url,
                        "--initial-advertise-peer-urls",
                        &m.peer_url,
                        "--initial-cluster",
                        &m.initial_cluster,
                        "--initial-cluster-state",
                        m.initial_state,
                        "--initial-cluster-token",
                        &format!("skiff-test-{}", self.root.path().display()),
                    ]
                    .iter()
                    .map(|s| s.to_string()),
                );
                p.clone()
            }
        };
        if let Some(n) = self.opts.snapshot_count {
            args.push("--snapshot-count".into());
            args.push(n.to_string());
        }
        args.extend(self.opts.extra_args.iter().cloned());
        (prog, args)
    }

    fn spawn_member(&mut self, i: usize) {
        assert!(
            !self.members[i].is_running(),
            "member {i} is already running"
        );
        assert!(
            !self.members[i].removed,
            "member {i} was removed from the cluster"
        );
        let (prog, args) = self.command_line(i);
        let m = &mut self.members[i];
        m.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", m.log_path.display()));
        let _ = writeln!(
            log,
            "===== harness: start #{} of {} at {:?}: {} {}",
            m.starts,
            m.name,
            SystemTime::now(),
            prog.display(),
            args.join(" ")
        );
        let log2 = log.try_clone().expect("clone log fd");
        let mut cmd = Command::new(&prog);
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .env(OWNER_ENV, std::process::id().to_string());
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", prog.display()));
        m.child = Some(child);
    }

    // --- accessors -------------------------------------------------------

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn member(&self, i: usize) -> &Member {
        &self.members[i]
    }

    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Root temp dir of this cluster.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// Indexes of members whose process is running (and not removed).
    pub fn running(&self) -> Vec<usize> {
        self.members
            .iter()
            .filter(|m| m.is_running() && !m.removed)
            .map(|m| m.index)
            .collect()
    }

    /// Client URLs of the given members, comma-joined.
    pub fn endpoints_of(&self, idx: &[usize]) -> String {
        idx.iter()
            .map(|&i| self.members[i].client_url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Client URLs of all running members, comma-joined (all members if
    /// none is running).
    pub fn endpoints(&self) -> String {
        let r = self.running();
        if r.is_empty() {
            self.endpoints_of(&(0..self.len()).collect::<Vec<_>>())
        } else {
            self.endpoints_of(&r)
        }
    }

    /// Client URLs of all running members as a Vec.
    pub fn endpoint_list(&self) -> Vec<String> {
        self.running()
            .iter()
            .map(|&i| self.members[i].client_url.clone())
            .collect()
    }

    // --- process control -------------------------------------------------

    /// Checks that no running member has exited on its own; panics with its
    /// log if one has (members removed with `remove_member` may exit).
    pub fn check_alive(&mut self) {
        for i in 0..self.members.len() {
            let exited = match self.members[i].child.as_mut() {
                Some(c) => c.try_wait().ok().flatten(),
                None => None,
            };
            if let Some(st) = exited {
                self.members[i].child = None;
                if self.members[i].removed {
                    // A removed member may shut itself down.
                    self.note(i, &format!("exited after removal: {st}"));
                    continue;
                }
                panic!(
                    "member {} ({}) exited unexpectedly with {st}\n{}",
                    i,
                    self.members[i].name,
                    self.member_log_tail(i, log_lines())
                );
            }
        }
    }

    /// SIGKILLs member `i` and waits for it to exit. No-op if not running.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
            self.note(i, "killed (SIGKILL)");
        }
    }

    /// SIGTERMs member `i` and waits up to 20 s for it to exit (then SIGKILL
    /// and panic: a clean stop must not hang). Returns its exit status.
    pub fn stop(&mut self, i: usize) -> Option<ExitStatus> {
        self.stop_timeout(i, Duration::from_secs(20))
    }

    pub fn stop_timeout(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let mut c = self.members[i].child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                self.note(i, &format!("stopped (SIGTERM): {st}"));
                return Some(st);
            }
            if Instant::now() >= deadline {
                let _ = c.kill();
                let _ = c.wait();
                self.note(i, "did not exit after SIGTERM; killed");
                panic!(
                    "member {i} did not exit within {timeout:?} of SIGTERM\n{}",
                    self.member_log_tail(i, log_lines())
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts member `i` again with exactly the flags it was first started
    /// with (its data dir holds its state). Does not wait for anything.
    pub fn restart(&mut self, i: usize) {
        self.spawn_member(i);
    }

    /// Kill (if running) and start again.
    pub fn kill_and_restart(&mut self, i: usize) {
        self.kill(i);
        self.restart(i);
    }

    fn note(&self, i: usize, what: &str) {
        if let Ok(mut f) = OpenOptions::new()
            .append(true)
            .open(&self.members[i].log_path)
        {
            let _ = writeln!(
                f,
                "===== harness: {} {what} at {:?}",
                self.members[i].name,
                SystemTime::now()
            );
        }
    }

    // --- membership ------------------------------------------------------

    /// Adds a member: `etcdctl member add NAME --peer-urls=URL [--learner]`
    /// against the running members, then starts its process with
    /// `--initial-cluster-state existing` and an --initial-cluster of every
    /// current (not removed) member plus itself. Returns its index. Does not
    /// wait for it to catch up.
    pub fn add_member(&mut self, name: &str, learner: bool) -> usize {
        let index = self.members.len();
        let mut m = Self::new_member(self.root.path(), index, String::new(), "existing");
        m.name = name.to_string();
        // Keep the directory named after the index so names may be anything.
        m.learner = learner;
        let mut args = vec![
            "member".to_string(),
            "add".to_string(),
            name.to_string(),
            format!("--peer-urls={}", m.peer_url),
        ];
        if learner {
            args.push("--learner".into());
        }
        // Retried: a store may refuse reconfiguration for a while (etcd says
        // "unhealthy cluster" until every member has been connected for a
        // few seconds). A retry after a lost reply finds the URL taken.
        let mut tries = 0;
        let res = wait_for(Duration::from_secs(30), Duration::from_millis(500), || {
            tries += 1;
            let out = self.etcdctl(&args);
            let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
            if out.status.success() || (tries > 1 && err.contains("already")) {
                Ok(())
            } else {
                Err(describe(&out))
            }
        });
        if let Err(e) = res {
            panic!("etcdctl {} failed: {e}", args.join(" "));
        }
        let mut ic: Vec<String> = self
            .members
            .iter()
            .filter(|m| !m.removed)
            .map(|m| format!("{}={}", m.name, m.peer_url))
            .collect();
        ic.push(format!("{}={}", m.name, m.peer_url));
        m.initial_cluster = ic.join(",");
        self.members.push(m);
        self.spawn_member(index);
        index
    }

    /// Raft id of member `i` (from `endpoint status` on it; cached).
    pub fn member_id(&mut self, i: usize) -> u64 {
        if let Some(id) = self.members[i].id {
            return id;
        }
        let st = self
            .status_of(i)
            .unwrap_or_else(|e| panic!("endpoint status of member {i}: {e}"));
        st.member_id
    }

    /// `etcdctl member remove <id>` for member `i` (the process is left
    /// running; kill it yourself if you want it gone).
    pub fn remove_member(&mut self, i: usize) {
        let id = self.member_id(i);
        let others: Vec<usize> = self.running().into_iter().filter(|&j| j != i).collect();
        let args = [
            "member".to_string(),
            "remove".to_string(),
            format!("{id:x}"),
        ];
        let out = self.etcdctl_with(&self.endpoints_of(&others), &args, None);
        check_ok(&format!("etcdctl member remove {id:x}"), &out);
        self.members[i].removed = true;
    }

    /// `etcdctl member promote <id>` for learner `i`; returns the output
    /// (promotion fails while the learner is behind, so callers may retry).
    pub fn promote(&mut self, i: usize) -> Output {
        let id = self.member_id(i);
        let out = self.etcdctl(&[
            "member".to_string(),
            "promote".to_string(),
            format!("{id:x}"),
        ]);
        if out.status.success() {
            self.members[i].learner = false;
        }
        out
    }

    // --- etcdctl -----------------------------------------------------------

    /// Runs etcdctl (ETCDCTL_API=3) against all running members.
    pub fn etcdctl<S: AsRef<str>>(&self, args: &[S]) -> Output {
        self.etcdctl_with(&self.endpoints(), args, None)
    }

    /// Runs etcdctl against all running members with `stdin` fed in.
    pub fn etcdctl_stdin<S: AsRef<str>>(&self, args: &[S], stdin: &str) -> Output {
        self.etcdctl_with(&self.endpoints(), args, Some(stdin.as_bytes()))
    }

    /// Runs etcdctl against member `i` only.
    pub fn etcdctl_at<S: AsRef<str>>(&self, i: usize, args: &[S]) -> Output {
        self.etcdctl_with(&self.members[i].client_url, args, None)
    }

    /// The etcdctl `Command` (not started) for the given endpoints; use it
    /// for long-running commands such as `watch`.
    pub fn etcdctl_command<S: AsRef<str>>(&self, endpoints: &str, args: &[S]) -> Command {
        let mut cmd = Command::new("etcdctl");
        cmd.env("ETCDCTL_API", "3")
            // Do not let the caller's environment redirect etcdctl.
            .env_remove("ETCDCTL_ENDPOINTS")
            .env_remove("ETCDCTL_CACERT")
            .env_remove("ETCDCTL_CERT")
            .env_remove("ETCDCTL_KEY")
            // etcdctl 3.4 sends a URL endpoint verbatim as the HTTP/2 :authority, which is not
            // a valid authority; host:port (etcdctl's own default form) is.
            .arg(format!("--endpoints={}", endpoints.replace("http://", "")))
            .arg(format!(
                "--command-timeout={}ms",
                self.command_timeout.as_millis()
            ))
            .arg("--dial-timeout=2s");
        for a in args {
            cmd.arg(a.as_ref());
        }
        cmd
    }

    /// Runs etcdctl against `endpoints`; killed if it takes longer than the
    /// command timeout plus 15 s.
    pub fn etcdctl_with<S: AsRef<str>>(
        &self,
        endpoints: &str,
        args: &[S],
        stdin: Option<&[u8]>,
    ) -> Output {
        let mut cmd = self.etcdctl_command(endpoints, args);
        run_with_timeout(
            &mut cmd,
            stdin,
            self.command_timeout + Duration::from_secs(15),
        )
    }

    /// Starts a long-running etcdctl (e.g. `watch k`) against all running
    /// members, with a line reader over its stdout. Killed on drop.
    pub fn etcdctl_spawn<S: AsRef<str>>(&self, args: &[S]) -> LineReader {
        let mut cmd = self.etcdctl_command(&self.endpoints(), args);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        LineReader::spawn(
            &mut cmd,
            Some(self.root().join(format!("etcdctl-{n}.stderr"))),
        )
    }

    // --- status, health, leader ------------------------------------------

    /// `etcdctl endpoint status -w json` on member `i` alone.
    pub fn status_of(&mut self, i: usize) -> Result<EndpointStatus, String> {
        let out = self.etcdctl_with(
            &self.members[i].client_url.clone(),
            &["endpoint", "status", "-w", "json", "--command-timeout=2s"],
            None,
        );
        let st = parse_status(i, &out)?;
        self.members[i].id = Some(st.member_id);
        Ok(st)
    }

    /// Statuses of all running members, queried in parallel; Err for those
    /// that did not answer.
    pub fn statuses(&mut self) -> Vec<(usize, Result<EndpointStatus, String>)> {
        let running = self.running();
        type Pending = (
            usize,
            Child,
            thread::JoinHandle<Vec<u8>>,
            thread::JoinHandle<Vec<u8>>,
        );
        let children: Vec<Pending> = running
            .iter()
            .map(|&i| {
                let mut cmd = self.etcdctl_command(
                    &self.members[i].client_url,
                    &["endpoint", "status", "-w", "json", "--command-timeout=2s"],
                );
                cmd.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                let mut c = cmd.spawn().expect("spawn etcdctl");
                let o = spawn_reader(c.stdout.take().unwrap());
                let e = spawn_reader(c.stderr.take().unwrap());
                (i, c, o, e)
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut res = Vec::new();
        for (i, mut c, o, e) in children {
            let status = loop {
                match c.try_wait() {
                    Ok(Some(st)) => break st,
                    _ if Instant::now() >= deadline => {
                        let _ = c.kill();
                        break c.wait().expect("wait");
                    }
                    _ => thread::sleep(Duration::from_millis(10)),
                }
            };
            let out = Output {
                status,
                stdout: o.join().unwrap_or_default(),
                stderr: e.join().unwrap_or_default(),
            };
            let st = parse_status(i, &out);
            if let Ok(s) = &st {
                self.members[i].id = Some(s.member_id);
            }
            res.push((i, st));
        }
        res
    }

    /// One poll: Ok(leader index) if every running member answers status
    /// and they all name the same leader, which is one of our members.
    pub fn leader_once(&mut self) -> Result<usize, String> {
        self.check_alive();
        let sts = self.statuses();
        if sts.is_empty() {
            return Err("no member is running".into());
        }
        let mut leader = None;
        let mut problems = Vec::new();
        for (i, st) in &sts {
            match st {
                Err(e) => problems.push(format!("member {i}: {e}")),
                Ok(s) if s.leader == 0 => problems.push(format!("member {i}: no leader")),
                Ok(s) => match leader {
                    None => leader = Some(s.leader),
                    Some(l) if l != s.leader => problems.push(format!(
                        "member {i} says leader {:x}, another says {l:x}",
                        s.leader
                    )),
                    _ => {}
                },
            }
        }
        if !problems.is_empty() {
            return Err(problems.join("; "));
        }
        let leader = leader.unwrap();
        match self
            .members
            .iter()
            .position(|m| m.id == Some(leader) && !m.removed)
        {
            Some(idx) if self.members[idx].is_running() => Ok(idx),
            Some(idx) => Err(format!(
                "leader {leader:x} is member {idx}, which is not running"
            )),
            None => Err(format!("leader {leader:x} is not a known running member")),
        }
    }

    /// Waits until every running member answers `endpoint status` and all
    /// agree on one running leader; returns the leader's index. Panics with
    /// the member logs on timeout.
    pub fn wait_leader(&mut self, timeout: Duration) -> usize {
        let mut last: String;
        let deadline = Instant::now() + timeout;
        loop {
            match self.leader_once() {
                Ok(l) => return l,
                Err(e) => last = e,
            }
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "no agreed leader among running members {:?} within {timeout:?}: {last}\n{}",
            self.running(),
            self.logs_tail(log_lines())
        );
    }

    /// `wait_leader`, plus `etcdctl endpoint health` (a quorum read through
    /// each running voting member) succeeding on every running member.
    pub fn wait_healthy(&mut self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        self.wait_leader(timeout);
        let mut last: String;
        loop {
            let bad: Vec<String> = self
                .running()
                .into_iter()
                .filter(|&i| !self.members[i].learner)
                .filter_map(|i| {
                    let out = self.etcdctl_at(i, &["endpoint", "health", "--command-timeout=2s"]);
                    if out.status.success() {
                        None
                    } else {
                        Some(format!("member {i}: {}", describe(&out)))
                    }
                })
                .collect();
            if bad.is_empty() {
                // Leadership may have moved meanwhile: report the current one.
                let left = deadline.saturating_duration_since(Instant::now());
                return self.wait_leader(left.max(Duration::from_secs(5)));
            }
            last = bad.join("\n");
            if Instant::now() >= deadline {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "cluster not healthy within {timeout:?}:\n{last}\n{}",
            self.logs_tail(log_lines())
        );
    }

    // --- partitions ------------------------------------------------------

    /// Cuts member `i` off from every other member (all TCP between its IP
    /// and theirs on this cluster's ports). The test's own client traffic
    /// (from 127.0.0.1) still reaches every member. Healed on drop of the
    /// returned value or of the cluster.
    pub fn isolate(&self, i: usize) -> Partition {
        let others: Vec<usize> = (0..self.members.len()).filter(|&j| j != i).collect();
        Partition::new(self, &[&[i], &others])
    }

    /// Splits the cluster into groups that cannot reach each other. Members
    /// not listed in any group are not affected.
    pub fn partition(&self, groups: &[&[usize]]) -> Partition {
        Partition::new(self, groups)
    }

    // --- logs ------------------------------------------------------------

    /// The last `lines` lines of member `i`'s log.
    pub fn member_log_tail(&self, i: usize, lines: usize) -> String {
        let m = &self.members[i];
        format!(
            "===== log of member {i} ({}) {} =====\n{}",
            m.name,
            m.log_path.display(),
            tail_file(&m.log_path, lines)
        )
    }

    /// The last `lines` lines of every member's log.
    pub fn logs_tail(&self, lines: usize) -> String {
        (0..self.members.len())
            .map(|i| self.member_log_tail(i, lines))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Whole log of member `i`.
    pub fn member_log(&self, i: usize) -> String {
        fs::read_to_string(&self.members[i].log_path).unwrap_or_default()
    }

    /// Prints every member's log tail to stderr.
    pub fn dump_logs(&self) {
        eprintln!("{}", self.logs_tail(log_lines()));
    }
}

fn log_lines() -> usize {
    std::env::var("SKIFF_TEST_LOG_LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(80)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for m in &mut self.members {
            if let Some(mut c) = m.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let tables: Vec<String> = self
            .partitions
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        for t in tables {
            if let Err(e) = nft_delete_table(&t) {
                eprintln!("[harness] {e}");
            }
        }
        if thread::panicking() {
            eprintln!(
                "\n[harness] test failed; member logs (dir {}; set SKIFF_TEST_KEEP=1 to keep it):\n{}",
                self.root.path().display(),
                self.logs_tail(log_lines())
            );
        }
    }
}

/// What `etcdctl endpoint status -w json` says about one member.
#[derive(Clone, Debug)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub member_id: u64,
    pub leader: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub raft_applied_index: u64,
    pub revision: i64,
    pub is_learner: bool,
    pub version: String,
    pub raw: Json,
}

fn parse_status(i: usize, out: &Output) -> Result<EndpointStatus, String> {
    if !out.status.success() {
        return Err(format!(
            "etcdctl endpoint status on member {i}: {}",
            describe(out)
        ));
    }
    let text = stdout_str(out);
    let json = Json::parse(text.trim()).map_err(|e| format!("{e}; output: {text}"))?;
    let first = json
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| format!("no status in {text}"))?;
    let st = first
        .get("Status")
        .ok_or_else(|| format!("no Status in {text}"))?;
    // Go's JSON omits zero fields (omitempty), so absent means 0.
    let num = |keys: &[&str]| st.path(keys).and_then(Json::as_u64).unwrap_or(0);
    let member_id = num(&["header", "member_id"]);
    if member_id == 0 {
        return Err(format!("no Status.header.member_id in {text}"));
    }
    Ok(EndpointStatus {
        endpoint: first
            .get("Endpoint")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        member_id,
        leader: num(&["leader"]),
        raft_term: num(&["raftTerm"]),
        raft_index: num(&["raftIndex"]),
        raft_applied_index: num(&["raftAppliedIndex"]),
        revision: st
            .path(&["header", "revision"])
            .and_then(Json::as_i64)
            .unwrap_or(0),
        is_learner: st.get("isLearner").and_then(Json::as_bool).unwrap_or(false),
        version: st
            .get("version")
            .and_then(Json::as_str)
            .unwrap_or_default()
            .to_string(),
        raw: first.clone(),
    })
}

// ---------------------------------------------------------------------------
// Partition (nftables)
// ---------------------------------------------------------------------------

static NFT_SEQ: AtomicU32 = AtomicU32::new(0);

/// A network partition between groups of members, made with a dedicated
/// nftables table `inet skiff_test_<pid>_<n>`. Needs root and `nft`.
///
/// For every ordered pair of groups (A, B) the table's output-hook chain
/// drops TCP packets with source IP in A, destination IP in B, and source or
/// destination port among this cluster's ports (clients and peers, taken
/// when the partition is made). That cuts both directions of every
/// connection between the groups, established ones included (no conntrack
/// exemption), whichever side opened it — given that members bind outgoing
/// peer connections to their own IP. Client traffic from the test (source
/// 127.0.0.1) is untouched, and so are other clusters in the same process,
/// which share the IPs but not the ports.
pub struct Partition {
    table: Option<String>,
    registry: Arc<Mutex<HashSet<String>>>,
    pub script: String,
}

impl Partition {
    pub fn new(cluster: &Cluster, groups: &[&[usize]]) -> Partition {
        assert!(
            is_root(),
            "Partition needs root: guard the test with require_root()"
        );
        let mut seen = HashSet::new();
        for g in groups {
            for &i in g.iter() {
                assert!(i < cluster.len(), "no member {i}");
                assert!(seen.insert(i), "member {i} is in two groups");
            }
        }
        let table = format!(
            "{NFT_PREFIX}{}_{}",
            std::process::id(),
            NFT_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let ports: Vec<String> = cluster
            .members()
            .iter()
            .flat_map(|m| [m.client_port, m.peer_port])
            .map(|p| p.to_string())
            .collect();
        let ports = ports.join(", ");
        let ips = |g: &[usize]| {
            g.iter()
                .map(|&i| cluster.member(i).ip.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut script = format!(
            "table inet {table} {{\n  chain out {{\n    type filter hook output priority 0; policy accept;\n"
        );
        for (a, ga) in groups.iter().enumerate() {
            for (b, gb) in groups.iter().enumerate() {
                if a == b || ga.is_empty() || gb.is_empty() {
                    continue;
                }
                for dir in ["dport", "sport"] {
                    let _ = writeln!(
                        script,
                        "    ip saddr {{ {} }} ip daddr {{ {} }} tcp {dir} {{ {ports} }} counter drop",
                        ips(ga),
                        ips(gb)
                    );
                }
            }
        }
        script.push_str("  }\n}\n");
        // Register before creating, so a panic in between still cleans up.
        cluster.partitions.lock().unwrap().insert(table.clone());
        if let Err(e) = nft_script(&script) {
            cluster.partitions.lock().unwrap().remove(&table);
            panic!("{e}");
        }
        Partition {
            table: Some(table),
            registry: cluster.partitions.clone(),
            script,
        }
    }

    /// The nftables table name.
    pub fn table(&self) -> Option<&str> {
        self.table.as_deref()
    }

    /// `nft list table` output (rules with packet counters), for debugging.
    pub fn list(&self) -> String {
        match &self.table {
            Some(t) => {
                let out = run_with_timeout(
                    Command::new(nft_bin()).args(["list", "table", "inet", t]),
                    None,
                    Duration::from_secs(20),
                );
                stdout_str(&out)
            }
            None => String::new(),
        }
    }

    /// Removes the partition (deletes the table). Idempotent.
    pub fn heal(&mut self) {
        if let Some(t) = self.table.take() {
            let res = nft_delete_table(&t);
            self.registry.lock().map(|mut s| s.remove(&t)).ok();
            if let Err(e) = res {
                if thread::panicking() {
                    eprintln!("[harness] {e}");
                } else {
                    panic!("{e}");
                }
            }
        }
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        if let Some(t) = self.table.take() {
            if let Err(e) = nft_delete_table(&t) {
                eprintln!("[harness] {e}");
            }
            self.registry.lock().map(|mut s| s.remove(&t)).ok();
        }
    }
}
