//! Container logs in the CRI format the kubelet and `kubectl logs` read: one line per record,
//! `<RFC3339Nano time> <stdout|stderr> <F|P> <message>`, where `P` marks a piece of a line longer
//! than the split size and `F` a complete line (or the last piece). Files rotate by size:
//! `<n>.log` is current, `<n>.log.1` the previous one, up to `max_files` files in all.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Which output stream a record came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// The container's standard output.
    Stdout,
    /// The container's standard error.
    Stderr,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// When to rotate: the kubelet's `containerLogMaxSize` and `containerLogMaxFiles`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LogRotation {
    /// Rotate before a record would make the current file larger than this (bytes).
    pub max_size: u64,
    /// Files kept, the current one included (at least 1).
    pub max_files: u32,
}

impl Default for LogRotation {
    /// The kubelet's defaults: 10 MiB, 5 files.
    fn default() -> Self {
        LogRotation {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// Lines longer than this are split into `P` records, as containerd does (16 KiB).
pub const MAX_LINE: usize = 16 * 1024;

/// Formats a time as RFC 3339 in UTC with nanoseconds, e.g. `2024-05-01T12:00:00.000000001Z`.
pub fn rfc3339_nano(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, dd) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{dd:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60,
        d.subsec_nanos()
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Appends CRI records to a log file and rotates it by size.
pub struct CriLogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    rotation: LogRotation,
}

impl CriLogWriter {
    /// Opens (appending to) the log file, creating its directory.
    pub fn open(path: &Path, rotation: LogRotation) -> io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(CriLogWriter {
            path: path.to_path_buf(),
            file,
            size,
            rotation,
        })
    }

    /// Writes one record stamped now.
    pub fn write_record(&mut self, stream: Stream, partial: bool, msg: &[u8]) -> io::Result<()> {
        self.write_record_at(SystemTime::now(), stream, partial, msg)
    }

    /// Writes one record with the given time.
    pub fn write_record_at(
        &mut self,
        t: SystemTime,
        stream: Stream,
        partial: bool,
        msg: &[u8],
    ) -> io::Result<()> {
        let mut rec = Vec::with_capacity(msg.len() + 48);
        rec.extend_from_slice(rfc3339_nano(t).as_bytes());
        rec.push(b' ');
        rec.extend_from_slice(stream.tag().as_bytes());
        rec.extend_from_slice(if partial { b" P " } else { b" F " });
        rec.extend_from_slice(msg);
        rec.push(b'\n');
        if self.size > 0 && self.size + rec.len() as u64 > self.rotation.max_size {
            self.rotate()?;
        }
        self.file.write_all(&rec)?;
        self.size += rec.len() as u64;
        Ok(())
    }

    fn rotated(&self, n: u32) -> PathBuf {
        let mut s = self.path.clone().into_os_string();
        s.push(format!(".{n}"));
        PathBuf::from(s)
    }

    /// Shifts `<log>.k` to `<log>.k+1` (dropping the oldest) and starts an empty current file.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.rotation.max_files.max(1);
        if keep == 1 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        let _ = std::fs::remove_file(self.rotated(keep - 1));
        for k in (1..keep - 1).rev() {
            let from = self.rotated(k);
            if from.exists() {
                std::fs::rename(&from, self.rotated(k + 1))?;
            }
        }
        std::fs::rename(&self.path, self.rotated(1))?;
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Splits one stream's bytes into CRI records: complete lines become `F` records, runs longer
/// than [`MAX_LINE`] without a newline become `P` records. Holds at most `MAX_LINE` bytes.
#[derive(Default)]
pub struct LineSplitter {
    buf: Vec<u8>,
}

impl LineSplitter {
    /// Feeds bytes; calls `emit(message, partial)` for each record they complete.
    pub fn push(
        &mut self,
        mut data: &[u8],
        mut emit: impl FnMut(&[u8], bool) -> io::Result<()>,
    ) -> io::Result<()> {
        while !data.is_empty() {
            let room = MAX_LINE - self.buf.len();
            match data.iter().take(room).position(|b| *b == b'\n') {
                Some(nl) => {
                    if self.buf.is_empty() {
                        emit(&data[..nl], false)?;
                    } else {
                        self.buf.extend_from_slice(&data[..nl]);
                        emit(&self.buf, false)?;
                        self.buf.clear();
                    }
                    data = &data[nl + 1..];
                }
                None => {
                    let take = room.min(data.len());
                    self.buf.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if self.buf.len() == MAX_LINE {
                        emit(&self.buf, true)?;
                        self.buf.clear();
                    }
                }
            }
        }
        Ok(())
    }

    /// At end of stream: whatever is left is a complete (unterminated) line.
    pub fn finish(
        &mut self,
        mut emit: impl FnMut(&[u8], bool) -> io::Result<()>,
    ) -> io::Result<()> {
        if !self.buf.is_empty() {
            emit(&self.buf, false)?;
            self.buf.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates_convert() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_nano(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 5); // 2024-02-29T12:34:56
        assert_eq!(rfc3339_nano(t), "2024-02-29T12:34:56.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(rfc3339_nano(t), "2000-02-29T00:00:00.000000000Z");
    }

    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut s = LineSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |m, p| {
                out.push((m.to_vec(), p));
                Ok(())
            })
            .unwrap();
        }
        s.finish(|m, p| {
            out.push((m.to_vec(), p));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn splitter_lines_and_partials() {
        let out = split(&[b"hel", b"lo\nwor", b"ld\n\nend"]);
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"hello".to_vec(), false),
            (b"world".to_vec(), false),
            (b"".to_vec(), false),
            (b"end".to_vec(), false),
        ];
        assert_eq!(out, want);

        let long = vec![b'x'; MAX_LINE * 2 + 10];
        let mut input = long.clone();
        input.push(b'\n');
        let out = split(&[&input]);
        assert_eq!(out.len(), 3);
        assert!(out[0].1 && out[1].1 && !out[2].1);
        assert_eq!(out[0].0.len(), MAX_LINE);
        assert_eq!(out[2].0.len(), 10);
    }

    #[test]
    fn writer_format_and_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pod/ctr/0.log");
        let mut w = CriLogWriter::open(
            &path,
            LogRotation {
                max_size: 100,
                max_files: 3,
            },
        )
        .unwrap();
        w.write_record_at(UNIX_EPOCH, Stream::Stdout, false, b"hello")
            .unwrap();
        w.write_record_at(UNIX_EPOCH, Stream::Stderr, true, b"part")
            .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "1970-01-01T00:00:00.000000000Z stdout F hello\n1970-01-01T00:00:00.000000000Z stderr P part\n"
        );
        for i in 0..10 {
            w.write_record(Stream::Stdout, false, format!("line {i}").as_bytes())
                .unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() <= 100);
        assert!(dir.path().join("pod/ctr/0.log.1").exists());
        assert!(dir.path().join("pod/ctr/0.log.2").exists());
        assert!(!dir.path().join("pod/ctr/0.log.3").exists());
        let last = std::fs::read_to_string(&path).unwrap();
        assert!(last.ends_with("stdout F line 9\n"), "{last}");
    }
}
