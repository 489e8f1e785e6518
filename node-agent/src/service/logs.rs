//! `Logs`: a container's CRI log files as `kubectl logs` asks for them.
//!
//! Instance `n` of a container logs to `<log_dir>/<n>.log`; size rotation moved older parts
//! to `<n>.log.1`, `<n>.log.2`, ... (higher is older), which are read first. Each record's
//! CRI prefix (`<RFC3339Nano> stdout|stderr F|P `) is stripped, `P` pieces are joined into
//! their line, and `timestamps` puts the record's time (in Go's RFC3339Nano form, as the
//! kubelet prints it) before each line. `since_seconds` drops older records, `tail_lines`
//! keeps the last lines (counted in a first pass, so memory stays bounded), `limit_bytes`
//! cuts the output. With `follow` the current file is polled for new records, across a
//! rotation, until the instance has exited and its file is drained, or the client goes away.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skiff_proto::agent::{LogChunk, LogRequest};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{BoxStream, PodDirectory};
use crate::runtime::Runtime;

/// Chunks waiting for the client.
const OUTPUT_QUEUE: usize = 16;
/// Output is sent in chunks of about this size.
const CHUNK: usize = 32 * 1024;
/// A record longer than this is cut (the shim writes at most 16 KiB of message per record).
const MAX_RECORD: usize = 64 * 1024;
/// How often a followed file is checked for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// Serves one log request.
pub async fn serve(
    pods: &dyn PodDirectory,
    runtime: Arc<Runtime>,
    req: LogRequest,
) -> Result<BoxStream<LogChunk>, Status> {
    let c = pods
        .container(&req.namespace, &req.pod, &req.pod_uid, &req.container)
        .ok_or_else(|| {
            Status::not_found(format!(
                "container {:?} in pod {:?} not found",
                req.container, req.pod
            ))
        })?;
    let (attempt, follow_id) = if req.previous {
        let prev = c.attempt.checked_sub(1).filter(|p| {
            c.log_dir.join(format!("{p}.log")).exists()
                || !rotated(&c.log_dir.join(format!("{p}.log"))).is_empty()
        });
        match prev {
            Some(p) => (p, None),
            None => {
                return Err(Status::invalid_argument(format!(
                    "previous terminated container {:?} in pod {:?} not found",
                    req.container, req.pod
                )))
            }
        }
    } else {
        let Some(id) = c.id.clone() else {
            return Err(Status::invalid_argument(format!(
                "container {:?} in pod {:?} is waiting to start: ContainerCreating",
                req.container, req.pod
            )));
        };
        (c.attempt, req.follow.then_some(id))
    };
    let current = c.log_dir.join(format!("{attempt}.log"));
    let opts = Options::from_request(&req, SystemTime::now());
    let (tx, rx) = mpsc::channel(OUTPUT_QUEUE);
    tokio::spawn(async move {
        let mut out = Output {
            tx,
            buf: Vec::with_capacity(CHUNK),
            left: opts.limit_bytes,
        };
        if let Err(e) = stream_logs(&current, &opts, follow_id, &runtime, &mut out).await {
            let _ = out.flush().await;
            let _ = out
                .tx
                .send(Err(Status::internal(format!("reading {current:?}: {e}"))))
                .await;
            return;
        }
        let _ = out.flush().await;
    });
    Ok(Box::pin(ReceiverStream::new(rx)))
}

/// The request's options, resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Options {
    timestamps: bool,
    tail: Option<u64>,
    since: Option<SystemTime>,
    limit_bytes: Option<u64>,
}

impl Options {
    fn from_request(req: &LogRequest, now: SystemTime) -> Options {
        Options {
            timestamps: req.timestamps,
            // Negative means all, as in kubectl's `--tail=-1`.
            tail: req.tail_lines.and_then(|t| u64::try_from(t).ok()),
            since: req
                .since_seconds
                .filter(|s| *s > 0)
                // Further back than the clock goes: everything.
                .map(|s| {
                    now.checked_sub(Duration::from_secs(s.unsigned_abs()))
                        .unwrap_or(UNIX_EPOCH)
                }),
            limit_bytes: req.limit_bytes.filter(|b| *b > 0).map(|b| b.unsigned_abs()),
        }
    }
}

/// Rotated parts of a log file, oldest (highest number) first.
fn rotated(current: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (current.parent(), current.file_name()) else {
        return Vec::new();
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut parts: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let n = e
                .file_name()
                .to_string_lossy()
                .strip_prefix(&prefix)?
                .parse()
                .ok()?;
            Some((n, e.path()))
        })
        .collect();
    parts.sort_by_key(|p| std::cmp::Reverse(p.0));
    parts.into_iter().map(|(_, p)| p).collect()
}

/// One CRI record.
#[derive(Debug, PartialEq, Eq)]
struct Record<'a> {
    time: &'a str,
    partial: bool,
    msg: &'a [u8],
}

/// Parses `<time> <stream> <F|P> <msg>`; `None` for a line that is not a record.
fn parse_record(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = parts.next()?;
    if stream != b"stdout" && stream != b"stderr" {
        return None;
    }
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    Some(Record {
        time,
        partial,
        msg: parts.next().unwrap_or(b""),
    })
}

/// Parses an RFC 3339 time (`2024-05-01T12:00:00.5Z`, `...+02:00`).
fn parse_time(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut rest = &s[19..];
    let mut nanos: u64 = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        let f = &frac[..digits];
        for (i, c) in f.bytes().take(9).enumerate() {
            nanos += u64::from(c - b'0') * 10u64.pow(8 - i as u32);
        }
        rest = &frac[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        o if o.len() == 6 => {
            let sign = match &o[..1] {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            sign * (o.get(1..3)?.parse::<i64>().ok()? * 3600
                + o.get(4..6)?.parse::<i64>().ok()? * 60)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let secs = u64::try_from(secs).ok()?;
    Some(UNIX_EPOCH + Duration::new(secs, nanos as u32))
}

/// (year, month, day) to days since 1970-01-01; Howard Hinnant's algorithm.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The record's time as Go's RFC3339Nano prints it (trailing zeros of the fraction
/// dropped), as `kubectl logs --timestamps` shows it.
fn go_time(t: &str) -> String {
    match t.split_once('.') {
        Some((whole, frac)) => {
            let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
            let (f, zone) = frac.split_at(digits);
            let f = f.trim_end_matches('0');
            if f.is_empty() {
                format!("{whole}{zone}")
            } else {
                format!("{whole}.{f}{zone}")
            }
        }
        None => t.to_string(),
    }
}

/// Turns records into output lines: timestamps, joined partials, the since filter and the
/// lines skipped for the tail.
struct Formatter<'a> {
    opts: &'a Options,
    at_line_start: bool,
    skip_lines: u64,
}

impl Formatter<'_> {
    /// Appends the record's output to `out`; returns whether it completed a line.
    fn record(&mut self, line: &[u8], out: &mut Vec<u8>) -> bool {
        let Some(rec) = parse_record(line) else {
            return false;
        };
        if let Some(since) = self.opts.since {
            if parse_time(rec.time).is_some_and(|t| t < since) {
                return false;
            }
        }
        let starts_line = self.at_line_start;
        self.at_line_start = !rec.partial;
        if self.skip_lines > 0 {
            if !rec.partial {
                self.skip_lines -= 1;
            }
            return !rec.partial;
        }
        if starts_line && self.opts.timestamps {
            out.extend_from_slice(go_time(rec.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(rec.msg);
        if !rec.partial {
            out.push(b'\n');
        }
        !rec.partial
    }
}

/// Where output goes: chunks to the client, cut at the byte limit.
struct Output {
    tx: mpsc::Sender<Result<LogChunk, Status>>,
    buf: Vec<u8>,
    left: Option<u64>,
}

impl Output {
    /// Queues bytes; false once the limit is reached or the client is gone (stop reading).
    async fn push(&mut self, data: &[u8]) -> bool {
        let data = match self.left {
            Some(left) => {
                let n = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                self.left = Some(left - n as u64);
                &data[..n]
            }
            None => data,
        };
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK && !self.flush().await {
            return false;
        }
        self.left != Some(0)
    }

    async fn flush(&mut self) -> bool {
        if self.buf.is_empty() {
            return !self.tx.is_closed();
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(Ok(LogChunk { data })).await.is_ok()
    }
}

/// A log file read record by record from where it was left.
struct Cursor {
    file: tokio::fs::File,
    ino: u64,
    pending: Vec<u8>,
    chunk: Vec<u8>,
}

impl Cursor {
    async fn open(path: &Path) -> std::io::Result<Option<Cursor>> {
        match tokio::fs::File::open(path).await {
            Ok(file) => {
                use std::os::unix::fs::MetadataExt;
                let ino = file.metadata().await?.ino();
                Ok(Some(Cursor {
                    file,
                    ino,
                    pending: Vec::new(),
                    chunk: vec![0u8; CHUNK],
                }))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Calls `each` for every complete record now in the file (up to its current end);
    /// stops early when `each` returns false. A trailing piece without its newline waits
    /// for the next call.
    async fn read_records(&mut self, mut each: impl FnMut(&[u8]) -> bool) -> std::io::Result<bool> {
        loop {
            let n = self.file.read(&mut self.chunk).await?;
            if n == 0 {
                return Ok(true);
            }
            let mut data = &self.chunk[..n];
            while let Some(nl) = data.iter().position(|b| *b == b'\n') {
                let keep_going = if self.pending.is_empty() {
                    each(&data[..nl])
                } else {
                    self.pending.extend_from_slice(&data[..nl]);
                    let line = std::mem::take(&mut self.pending);
                    each(&line)
                };
                data = &data[nl + 1..];
                if !keep_going {
                    return Ok(false);
                }
            }
            let room = MAX_RECORD.saturating_sub(self.pending.len());
            self.pending
                .extend_from_slice(&data[..data.len().min(room)]);
        }
    }
}

/// Counts the lines (complete records after the since filter) in the files.
async fn count_lines(files: &[PathBuf], opts: &Options) -> std::io::Result<u64> {
    let mut f = Formatter {
        opts,
        at_line_start: true,
        skip_lines: u64::MAX,
    };
    let mut count = 0u64;
    let mut scratch = Vec::new();
    for path in files {
        if let Some(mut c) = Cursor::open(path).await? {
            c.read_records(|line| {
                if f.record(line, &mut scratch) {
                    count += 1;
                }
                true
            })
            .await?;
        }
    }
    Ok(count)
}

async fn stream_logs(
    current: &Path,
    opts: &Options,
    follow_id: Option<String>,
    runtime: &Arc<Runtime>,
    out: &mut Output,
) -> std::io::Result<()> {
    let mut files = rotated(current);
    files.push(current.to_path_buf());
    let skip_lines = match opts.tail {
        Some(tail) => count_lines(&files, opts).await?.saturating_sub(tail),
        None => 0,
    };
    let mut fmt = Formatter {
        opts,
        at_line_start: true,
        skip_lines,
    };
    let mut text = Vec::new();
    // The rotated parts, then the current file, which stays open for following.
    let (older, _) = files.split_at(files.len() - 1);
    for path in older {
        if let Some(mut c) = Cursor::open(path).await? {
            if !drain(&mut c, &mut fmt, &mut text, out).await? {
                return Ok(());
            }
        }
    }
    let mut cursor = Cursor::open(current).await?;
    if let Some(c) = cursor.as_mut() {
        if !drain(c, &mut fmt, &mut text, out).await? {
            return Ok(());
        }
    }
    let Some(id) = follow_id else {
        return Ok(());
    };
    loop {
        if !out.flush().await {
            return Ok(());
        }
        // Read once more after the exit is known: the shim records the exit only after it
        // has written the last output.
        let exited = {
            let rt = runtime.clone();
            let id = id.clone();
            tokio::task::spawn_blocking(move || rt.exit_status(&id))
                .await
                .map_err(std::io::Error::other)?
                .map(|e| e.is_some())
                // A container deleted while followed has ended too.
                .unwrap_or(true)
        };
        // A rotation renamed the file we read: finish it, then go on with the new one.
        let now_ino = tokio::fs::metadata(current).await.ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            m.ino()
        });
        if let Some(c) = cursor.as_mut() {
            if !drain(c, &mut fmt, &mut text, out).await? {
                return Ok(());
            }
        }
        if now_ino.is_some() && now_ino != cursor.as_ref().map(|c| c.ino) {
            cursor = Cursor::open(current).await?;
            if let Some(c) = cursor.as_mut() {
                if !drain(c, &mut fmt, &mut text, out).await? {
                    return Ok(());
                }
            }
        }
        if exited {
            return Ok(());
        }
        tokio::select! {
            _ = out.tx.closed() => return Ok(()),
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
        }
    }
}

/// Formats and sends every complete record in the file; false when output must stop.
async fn drain(
    c: &mut Cursor,
    fmt: &mut Formatter<'_>,
    text: &mut Vec<u8>,
    out: &mut Output,
) -> std::io::Result<bool> {
    loop {
        // Format up to a chunk's worth, then send it (sending awaits, formatting does not).
        let finished = c
            .read_records(|line| {
                fmt.record(line, text);
                text.len() < CHUNK
            })
            .await?;
        if !text.is_empty() {
            let data = std::mem::take(text);
            if !out.push(&data).await {
                return Ok(false);
            }
        }
        if finished {
            return Ok(true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            timestamps: false,
            tail: None,
            since: None,
            limit_bytes: None,
        }
    }

    fn format(lines: &[&str], opts: &Options, skip: u64) -> String {
        let mut f = Formatter {
            opts,
            at_line_start: true,
            skip_lines: skip,
        };
        let mut out = Vec::new();
        for l in lines {
            f.record(l.as_bytes(), &mut out);
        }
        String::from_utf8(out).unwrap()
    }

    const LOG: &[&str] = &[
        "2024-01-01T00:00:00.100000000Z stdout F one",
        "2024-01-01T00:00:01.000000000Z stderr P tw",
        "2024-01-01T00:00:01.500000000Z stderr F o",
        "garbage line",
        "2024-01-01T00:00:02.123456789Z stdout F three",
        "2024-01-01T00:00:03.000000000Z stdout F ",
    ];

    #[test]
    fn strips_prefixes_and_joins_partials() {
        assert_eq!(format(LOG, &opts(), 0), "one\ntwo\nthree\n\n");
    }

    #[test]
    fn timestamps_in_go_form() {
        let o = Options {
            timestamps: true,
            ..opts()
        };
        assert_eq!(
            format(LOG, &o, 0),
            "2024-01-01T00:00:00.1Z one\n2024-01-01T00:00:01Z two\n\
             2024-01-01T00:00:02.123456789Z three\n2024-01-01T00:00:03Z \n"
        );
    }

    #[test]
    fn tail_skips_whole_lines() {
        assert_eq!(format(LOG, &opts(), 1), "two\nthree\n\n");
        assert_eq!(format(LOG, &opts(), 2), "three\n\n");
    }

    #[test]
    fn since_drops_older_records() {
        let o = Options {
            since: parse_time("2024-01-01T00:00:01.2Z"),
            ..opts()
        };
        assert_eq!(format(LOG, &o, 0), "o\nthree\n\n");
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("1970-01-01T00:00:00Z"), Some(UNIX_EPOCH));
        assert_eq!(
            parse_time("2024-02-29T12:34:56.000000005Z"),
            Some(UNIX_EPOCH + Duration::new(1_709_210_096, 5))
        );
        assert_eq!(
            parse_time("2024-02-29T14:34:56.5+02:00"),
            Some(UNIX_EPOCH + Duration::new(1_709_210_096, 500_000_000))
        );
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(
            go_time("2024-01-01T00:00:00.000000000Z"),
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(
            go_time("2024-01-01T00:00:00.120000000Z"),
            "2024-01-01T00:00:00.12Z"
        );
    }

    #[test]
    fn options() {
        let now = UNIX_EPOCH + Duration::from_secs(1000);
        let req = LogRequest {
            tail_lines: Some(-1),
            since_seconds: Some(10),
            limit_bytes: Some(0),
            ..Default::default()
        };
        let o = Options::from_request(&req, now);
        assert_eq!(o.tail, None);
        assert_eq!(o.since, Some(UNIX_EPOCH + Duration::from_secs(990)));
        assert_eq!(o.limit_bytes, None);
        let huge = LogRequest {
            since_seconds: Some(i64::MAX),
            ..Default::default()
        };
        let since = Options::from_request(&huge, now).since;
        assert!(since.is_some_and(|t| t <= UNIX_EPOCH), "{since:?}");
    }

    #[tokio::test]
    async fn files_rotated_and_limited() {
        let dir = tempfile::tempdir().unwrap();
        let cur = dir.path().join("0.log");
        std::fs::write(
            dir.path().join("0.log.2"),
            "2024-01-01T00:00:00Z stdout F a\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("0.log.1"),
            "2024-01-01T00:00:01Z stdout F b\n2024-01-01T00:00:02Z stdout P c",
        )
        .unwrap();
        // A piece without its newline at a file's end is dropped; the next file's records
        // go on.
        std::fs::write(&cur, "2024-01-01T00:00:03Z stdout F d\n").unwrap();
        std::fs::write(dir.path().join("0.log.x"), "junk\n").unwrap();
        assert_eq!(
            rotated(&cur),
            vec![dir.path().join("0.log.2"), dir.path().join("0.log.1")]
        );
        let rt = Arc::new(
            Runtime::new(
                crate::runtime::RuntimeDirs::new(&dir.path().join("run"), &dir.path().join("data")),
                PathBuf::from("/bin/false"),
            )
            .unwrap(),
        );
        let run = |o: Options| {
            let rt = rt.clone();
            let cur = cur.clone();
            async move {
                let (tx, mut rx) = mpsc::channel(4);
                let mut out = Output {
                    tx,
                    buf: Vec::new(),
                    left: o.limit_bytes,
                };
                let task = tokio::spawn(async move {
                    stream_logs(&cur, &o, None, &rt, &mut out).await.unwrap();
                    out.flush().await;
                });
                let mut all = Vec::new();
                while let Some(Ok(c)) = rx.recv().await {
                    all.extend_from_slice(&c.data);
                }
                task.await.unwrap();
                String::from_utf8(all).unwrap()
            }
        };
        assert_eq!(run(opts()).await, "a\nb\nd\n");
        let tail = Options {
            tail: Some(2),
            ..opts()
        };
        assert_eq!(run(tail).await, "b\nd\n");
        let limit = Options {
            limit_bytes: Some(3),
            ..opts()
        };
        assert_eq!(run(limit).await, "a\nb");
    }

    async fn wait_for(
        rx: &mut mpsc::Receiver<Result<LogChunk, Status>>,
        got: &mut String,
        want: &str,
    ) {
        while !got.ends_with(want) {
            let c = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap_or_else(|_| panic!("no {want:?} after {got:?}"))
                .expect("stream ended early")
                .unwrap();
            got.push_str(&String::from_utf8_lossy(&c.data));
        }
    }

    #[tokio::test]
    async fn follow_across_rotation_until_exit() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        let cur = logs.join("0.log");
        let dirs =
            crate::runtime::RuntimeDirs::new(&dir.path().join("run"), &dir.path().join("data"));
        let bundle = dirs.bundles.join("c1");
        std::fs::create_dir_all(&bundle).unwrap();
        let rt = Arc::new(Runtime::new(dirs, PathBuf::from("/bin/false")).unwrap());
        let append = |path: &Path, text: &str| {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        append(&cur, "2024-01-01T00:00:00Z stdout F a\n");

        let (tx, mut rx) = mpsc::channel(4);
        let task = {
            let (rt, cur) = (rt.clone(), cur.clone());
            tokio::spawn(async move {
                let mut out = Output {
                    tx,
                    buf: Vec::new(),
                    left: None,
                };
                stream_logs(&cur, &opts(), Some("c1".into()), &rt, &mut out)
                    .await
                    .unwrap();
                out.flush().await;
            })
        };
        let mut got = String::new();
        wait_for(&mut rx, &mut got, "a\n").await;
        // A line split over two writes, then a rotation: the rest of the old file is read
        // before the new one.
        append(&cur, "2024-01-01T00:00:01Z stdout P b");
        append(&cur, "1\n2024-01-01T00:00:01Z stdout F b2\n");
        std::fs::rename(&cur, logs.join("0.log.1")).unwrap();
        append(&cur, "2024-01-01T00:00:02Z stdout F c\n");
        wait_for(&mut rx, &mut got, "b1b2\nc\n").await;
        // The exit is recorded after the last output; the stream drains and ends.
        append(&cur, "2024-01-01T00:00:03Z stderr F d\n");
        crate::runtime::ExitStatus::new(Some(0), None, 0, SystemTime::now())
            .write(&bundle.join("exit.json"))
            .unwrap();
        while let Some(c) = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .expect("follow did not end after the exit")
        {
            got.push_str(&String::from_utf8_lossy(&c.unwrap().data));
        }
        task.await.unwrap();
        assert_eq!(got, "a\nb1b2\nc\nd\n");
    }
}
