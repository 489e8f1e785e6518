//! Server side of a SPDY/3.1 session, as spoken by Kubernetes clients
//! (`kubectl port-forward`, client-go, which use `github.com/moby/spdystream`).
//!
//! Scope: everything a port-forward client needs and nothing more. The client
//! opens every stream; the server answers each SYN_STREAM with an empty
//! SYN_REPLY, echoes PINGs, carries DATA in both directions with FIN
//! half-closes, and honours RST_STREAM and GOAWAY. The server never opens
//! streams or sends PINGs of its own.
//!
//! Interoperability notes (checked against spdystream v0.5.0, the version
//! client-go 1.33 pins):
//! * spdystream implements no flow control. It parses WINDOW_UPDATE and
//!   SETTINGS but ignores them and never sends them, so this session neither
//!   sends them nor enforces send/receive windows (a 64 KiB window would stall
//!   forever, since no WINDOW_UPDATE ever arrives). Back-pressure instead comes
//!   from bounded queues: when a stream's inbound queue is full the reader task
//!   stops reading the socket, as spdystream itself does.
//! * Header blocks use one zlib context per direction for the whole session,
//!   primed with the SPDY/3 dictionary; every block ends with a sync flush.
//! * spdystream waits for a SYN_REPLY before it sends DATA on a stream it
//!   opened, and drops DATA on streams it has not seen replied, so the reply is
//!   queued before the stream is handed to the application.
//!
//! Memory is bounded: control frames are capped at [`MAX_CONTROL_FRAME_LEN`],
//! decompressed header blocks at [`MAX_HEADER_BLOCK_LEN`], DATA payloads are
//! read in chunks of at most [`INBOUND_CHUNK`] bytes into per-stream queues of
//! [`INBOUND_QUEUE`] chunks, and at most [`MAX_STREAMS`] streams are open at
//! once. Malformed input ends the session (GOAWAY PROTOCOL_ERROR) and never
//! panics.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, Mutex, Notify};
use tokio::task::JoinHandle;
use tracing::debug;

/// The most streams the peer may have open at once; further SYN_STREAMs are
/// refused with RST_STREAM(REFUSED_STREAM) so a client cannot grow our state
/// without bound.
pub const MAX_STREAMS: usize = 1000;

/// Largest control frame payload accepted. Control frames other than the
/// header-carrying ones are tiny; this bounds what one compressed header block
/// may make us buffer.
pub const MAX_CONTROL_FRAME_LEN: usize = 1 << 20;

/// Largest decompressed header block accepted, so a small compressed block
/// cannot inflate into unbounded memory ("zlib bomb").
pub const MAX_HEADER_BLOCK_LEN: usize = 1 << 20;

/// Size of the pieces DATA payloads are read and delivered in. A DATA frame may
/// legally carry up to 16 MiB; reading it piecewise keeps memory per stream
/// bounded by `INBOUND_CHUNK * INBOUND_QUEUE`.
pub const INBOUND_CHUNK: usize = 32 * 1024;

/// Chunks buffered per stream before the reader task waits for the
/// application (back-pressure in place of SPDY flow control, which the client
/// does not implement).
pub const INBOUND_QUEUE: usize = 8;

/// Largest DATA frame we send; [`StreamWriter::write`] splits bigger writes.
/// Matches the 32 KiB buffer `io.Copy` uses on the client side.
pub const OUTBOUND_CHUNK: usize = 32 * 1024;

/// Frames buffered for the writer task before senders wait.
pub const OUTBOUND_QUEUE: usize = 64;

/// New streams buffered before the reader task waits for [`Streams::next`].
pub const ACCEPT_QUEUE: usize = 16;

/// How long the writer may take to flush queued frames and a GOAWAY once the
/// session is over before it is aborted (the peer may have stopped reading).
pub const SHUTDOWN_LINGER: Duration = Duration::from_secs(5);

const VERSION: u16 = 3;
/// The only DATA and SYN_STREAM/SYN_REPLY/HEADERS flag we act on.
const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const RST_PROTOCOL_ERROR: u32 = 1;
const RST_REFUSED_STREAM: u32 = 3;
const RST_CANCEL: u32 = 5;

const GOAWAY_OK: u32 = 0;
const GOAWAY_PROTOCOL_ERROR: u32 = 1;

const STREAM_ID_MASK: u32 = 0x7fff_ffff;
const MAX_FRAME_LEN: usize = 0x00ff_ffff;
/// Bytes buffered by the writer before it hands them to the socket.
const WRITE_BATCH: usize = 64 * 1024;

/// adler32 of [`HEADER_DICTIONARY`]; a zlib stream that asks for any other
/// dictionary is not SPDY/3.
const DICTIONARY_ADLER32: u32 = 0xe3c6_a7c2;

/// The zlib dictionary for SPDY/3 header blocks, byte for byte as given in the
/// SPDY/3 draft (section 2.6.10.1). Both peers prime their zlib contexts with
/// it; any difference makes every header block undecodable.
const HEADER_DICTIONARY: &[u8; 1423] = b"\
    \x00\x00\x00\x07options\x00\x00\x00\x04head\x00\x00\x00\x04post\x00\x00\x00\x03put\
    \x00\x00\x00\x06delete\x00\x00\x00\x05trace\x00\x00\x00\x06accept\x00\x00\x00\x0eacc\
    ept-charset\x00\x00\x00\x0faccept-encoding\x00\x00\x00\x0faccept-language\x00\x00\
    \x00\x0daccept-ranges\x00\x00\x00\x03age\x00\x00\x00\x05allow\x00\x00\x00\x0dauthori\
    zation\x00\x00\x00\x0dcache-control\x00\x00\x00\x0aconnection\x00\x00\x00\x0ccontent\
    -base\x00\x00\x00\x10content-encoding\x00\x00\x00\x10content-language\x00\x00\x00\
    \x0econtent-length\x00\x00\x00\x10content-location\x00\x00\x00\x0bcontent-md5\x00\
    \x00\x00\x0dcontent-range\x00\x00\x00\x0ccontent-type\x00\x00\x00\x04date\x00\x00\
    \x00\x04etag\x00\x00\x00\x06expect\x00\x00\x00\x07expires\x00\x00\x00\x04from\x00\
    \x00\x00\x04host\x00\x00\x00\x08if-match\x00\x00\x00\x11if-modified-since\x00\x00\
    \x00\x0dif-none-match\x00\x00\x00\x08if-range\x00\x00\x00\x13if-unmodified-since\x00\
    \x00\x00\x0dlast-modified\x00\x00\x00\x08location\x00\x00\x00\x0cmax-forwards\x00\
    \x00\x00\x06pragma\x00\x00\x00\x12proxy-authenticate\x00\x00\x00\x13proxy-authorizat\
    ion\x00\x00\x00\x05range\x00\x00\x00\x07referer\x00\x00\x00\x0bretry-after\x00\x00\
    \x00\x06server\x00\x00\x00\x02te\x00\x00\x00\x07trailer\x00\x00\x00\x11transfer-enco\
    ding\x00\x00\x00\x07upgrade\x00\x00\x00\x0auser-agent\x00\x00\x00\x04vary\x00\x00\
    \x00\x03via\x00\x00\x00\x07warning\x00\x00\x00\x10www-authenticate\x00\x00\x00\x06me\
    thod\x00\x00\x00\x03get\x00\x00\x00\x06status\x00\x00\x00\x06200\x20OK\x00\x00\x00\
    \x07version\x00\x00\x00\x08HTTP/1.1\x00\x00\x00\x03url\x00\x00\x00\x06public\x00\x00\
    \x00\x0aset-cookie\x00\x00\x00\x0akeep-alive\x00\x00\x00\x06origin100101201202205206\
    300302303304305306307402405406407408409410411412413414415416417502504505203\x20Non-A\
    uthoritative\x20Information204\x20No\x20Content301\x20Moved\x20Permanently400\x20Bad\
    \x20Request401\x20Unauthorized403\x20Forbidden404\x20Not\x20Found500\x20Internal\x20\
    Server\x20Error501\x20Not\x20Implemented503\x20Service\x20UnavailableJan\x20Feb\x20M\
    ar\x20Apr\x20May\x20Jun\x20Jul\x20Aug\x20Sept\x20Oct\x20Nov\x20Dec\x2000:00:00\x20Mo\
    n,\x20Tue,\x20Wed,\x20Thu,\x20Fri,\x20Sat,\x20Sun,\x20GMTchunked,text/html,image/png\
    ,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascrip\
    t,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0\
    .";

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// Why a write on a stream failed. Typed so callers can tell a peer that went
/// away (stop everything) from a single stream being cancelled.
#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    /// The session is over (peer EOF, GOAWAY, protocol error, I/O error, or all
    /// handles dropped); nothing more can be sent.
    #[error("SPDY session closed")]
    SessionClosed,
    /// The stream was reset, by the peer (RST_STREAM) or by us.
    #[error("SPDY stream reset")]
    StreamReset,
    /// Our side of the stream was already half-closed (FIN sent, or the peer
    /// opened it unidirectional).
    #[error("SPDY stream already closed for writing")]
    StreamClosed,
}

/// Serves one SPDY/3.1 session over a byte stream (the connection after the
/// HTTP `Upgrade: SPDY/3.1` handshake), returning the streams the client opens.
///
/// Spawns a reader task (parses frames, answers SYN_STREAM and PING) and a
/// writer task (owns `writer` and the outbound compression context). Both end
/// when the peer sends EOF or GOAWAY, on a protocol error, or once the returned
/// [`Streams`] and every [`StreamReader`]/[`StreamWriter`] have been dropped.
///
/// Must be called from within a Tokio runtime (it uses `tokio::spawn`).
pub fn serve<R, W>(reader: R, writer: W) -> Streams
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (frames_tx, frames_rx) = mpsc::channel(OUTBOUND_QUEUE);
    let (accept_tx, accept_rx) = mpsc::channel(ACCEPT_QUEUE);
    let (life_tx, life_rx) = oneshot::channel();
    let (shutdown_tx, shutdown_rx) = oneshot::channel();
    let life = Arc::new(Life { _alive: life_tx });

    let writer_task = tokio::spawn(write_loop(writer, frames_rx, shutdown_rx));
    let session = Session {
        decompressor: HeaderDecompressor::new(),
        streams: HashMap::new(),
        frames: frames_tx,
        accept: accept_tx,
        life: Arc::downgrade(&life),
        last_seen_id: 0,
        last_accepted_id: 0,
    };
    tokio::spawn(read_loop(
        reader,
        session,
        life_rx,
        shutdown_tx,
        writer_task,
    ));
    Streams {
        rx: accept_rx,
        _life: life,
    }
}

/// The streams a client opens on one session, in the order it opened them.
/// Holding it keeps the session alive; dropping it (and all stream handles)
/// ends the session.
#[derive(Debug)]
pub struct Streams {
    rx: mpsc::Receiver<Stream>,
    _life: Arc<Life>,
}

impl Streams {
    /// Waits for the next stream the client opens. The SYN_REPLY has already
    /// been queued, so the caller can read and write at once. Returns `None`
    /// once the session has ended (EOF, GOAWAY, protocol or I/O error).
    pub async fn next(&mut self) -> Option<Stream> {
        self.rx.recv().await
    }
}

/// One client-opened stream: its id, the headers from its SYN_STREAM, and the
/// two directions as separate handles so they can move to different tasks.
#[derive(Debug)]
pub struct Stream {
    /// Stream id chosen by the client (odd, increasing); port-forward pairs
    /// streams by the `requestid` header rather than by id.
    pub id: u32,
    /// Header pairs from the SYN_STREAM, names lowercased as on the wire; a
    /// value containing NULs is split into several pairs with the same name.
    pub headers: Vec<(String, String)>,
    /// Data the client sends on this stream.
    pub reader: StreamReader,
    /// Sends data to the client on this stream.
    pub writer: StreamWriter,
}

impl Stream {
    /// First value of header `name`, compared case-insensitively (HTTP header
    /// names are case-insensitive; client-go sets e.g. `streamType`).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Receiving half of a stream.
#[derive(Debug)]
pub struct StreamReader {
    rx: mpsc::Receiver<Bytes>,
    shared: Arc<StreamShared>,
    _life: Arc<Life>,
}

impl StreamReader {
    /// Next piece of data as it arrived (never empty). Returns `None` after the
    /// client's FIN, after a reset by either side, or when the session ends.
    pub async fn read(&mut self) -> Option<Bytes> {
        let reset = self.shared.reset_notify.notified();
        tokio::pin!(reset);
        reset.as_mut().enable();
        if self.shared.is_reset() {
            return None;
        }
        tokio::select! {
            biased;
            _ = &mut reset => None,
            data = self.rx.recv() => data,
        }
    }
}

/// Sending half of a stream. Cheap to clone; all clones share one stream. When
/// the last clone is dropped without [`close`](Self::close) or
/// [`reset`](Self::reset), a FIN is sent so the client is not left waiting.
#[derive(Clone, Debug)]
pub struct StreamWriter {
    inner: Arc<WriterInner>,
}

impl StreamWriter {
    /// Sends `data` as one or more DATA frames of at most [`OUTBOUND_CHUNK`]
    /// bytes. Waits while the outbound queue is full. Writing nothing sends
    /// nothing.
    pub async fn write(&self, data: Bytes) -> Result<(), SpdyError> {
        let _order = self.inner.order.lock().await;
        let mut rest = data;
        while !rest.is_empty() {
            self.inner.check_writable()?;
            let piece = rest.split_to(rest.len().min(OUTBOUND_CHUNK));
            self.inner
                .frames
                .send(Outbound::Data {
                    id: self.inner.id,
                    data: piece,
                    fin: false,
                })
                .await
                .map_err(|_| SpdyError::SessionClosed)?;
        }
        Ok(())
    }

    /// Half-closes our side: sends an empty DATA frame with FLAG_FIN, which is
    /// how spdystream's `Stream.Close` does it. Calling it again is a no-op;
    /// fails if the stream was reset or the session is over.
    pub async fn close(&self) -> Result<(), SpdyError> {
        let _order = self.inner.order.lock().await;
        if self.inner.shared.is_reset() {
            return Err(SpdyError::StreamReset);
        }
        if self.inner.shared.local_closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        debug!(stream = self.inner.id, "spdy: sending FIN");
        self.inner
            .frames
            .send(Outbound::Data {
                id: self.inner.id,
                data: Bytes::new(),
                fin: true,
            })
            .await
            .map_err(|_| SpdyError::SessionClosed)
    }

    /// Aborts the stream in both directions with RST_STREAM(CANCEL), as
    /// spdystream's `Stream.Reset` does; pending and later reads return `None`.
    /// Does nothing if the stream was already reset.
    pub async fn reset(&self) {
        if !self.inner.shared.mark_reset() {
            return;
        }
        debug!(stream = self.inner.id, "spdy: sending RST_STREAM(CANCEL)");
        let _ = self
            .inner
            .frames
            .send(Outbound::Rst {
                id: self.inner.id,
                status: RST_CANCEL,
            })
            .await;
    }
}

// ---------------------------------------------------------------------------
// Shared state
// ---------------------------------------------------------------------------

/// Held (via `Arc`) by every user-facing handle. When the last one is dropped
/// the oneshot sender drops too, which tells the reader task to end the
/// session.
#[derive(Debug)]
struct Life {
    _alive: oneshot::Sender<()>,
}

/// State of one stream shared by the reader task and the user's handles.
#[derive(Debug)]
struct StreamShared {
    /// We sent FIN or RST, or the stream was opened unidirectional.
    local_closed: AtomicBool,
    /// Either side reset the stream.
    reset: AtomicBool,
    /// Wakes a blocked `read` (and the reader task's delivery) on reset.
    reset_notify: Notify,
}

impl StreamShared {
    fn new(local_closed: bool) -> Self {
        Self {
            local_closed: AtomicBool::new(local_closed),
            reset: AtomicBool::new(false),
            reset_notify: Notify::new(),
        }
    }

    fn is_reset(&self) -> bool {
        self.reset.load(Ordering::Acquire)
    }

    fn is_local_closed(&self) -> bool {
        self.local_closed.load(Ordering::Acquire)
    }

    /// Marks the stream reset; returns whether it was not already.
    fn mark_reset(&self) -> bool {
        self.local_closed.store(true, Ordering::Release);
        let first = !self.reset.swap(true, Ordering::AcqRel);
        self.reset_notify.notify_waiters();
        first
    }
}

#[derive(Debug)]
struct WriterInner {
    id: u32,
    shared: Arc<StreamShared>,
    frames: mpsc::Sender<Outbound>,
    /// Keeps one write's frames together and orders them against FIN.
    order: Mutex<()>,
    _life: Arc<Life>,
}

impl WriterInner {
    fn check_writable(&self) -> Result<(), SpdyError> {
        if self.shared.is_reset() {
            Err(SpdyError::StreamReset)
        } else if self.shared.is_local_closed() {
            Err(SpdyError::StreamClosed)
        } else {
            Ok(())
        }
    }
}

impl Drop for WriterInner {
    fn drop(&mut self) {
        if self.shared.is_reset() || self.shared.local_closed.swap(true, Ordering::AcqRel) {
            return;
        }
        debug!(stream = self.id, "spdy: writer dropped, sending FIN");
        let fin = Outbound::Data {
            id: self.id,
            data: Bytes::new(),
            fin: true,
        };
        if let Err(TrySendError::Full(fin)) = self.frames.try_send(fin) {
            if let Ok(handle) = tokio::runtime::Handle::try_current() {
                let frames = self.frames.clone();
                handle.spawn(async move {
                    let _ = frames.send(fin).await;
                });
            }
        }
    }
}

/// A frame for the writer task to encode and send.
#[derive(Debug)]
enum Outbound {
    SynReply { id: u32 },
    Data { id: u32, data: Bytes, fin: bool },
    Rst { id: u32, status: u32 },
    Ping { id: u32 },
    GoAway { last_good: u32, status: u32 },
}

// ---------------------------------------------------------------------------
// Errors inside the session
// ---------------------------------------------------------------------------

/// Why the session had to end; logged at debug level.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("unsupported SPDY version {0}")]
    UnsupportedVersion(u16),
    #[error("control frame of {0} bytes exceeds the limit")]
    ControlFrameTooLarge(usize),
    #[error("control frame type {frame_type} has invalid length {len}")]
    InvalidLength { frame_type: u16, len: usize },
    #[error("stream id 0 is not allowed here")]
    ZeroStreamId,
    #[error("header block decompresses to more than the limit")]
    HeaderBlockTooLarge,
    #[error("header block uses zlib dictionary {0:#010x}, not SPDY/3's")]
    WrongDictionary(u32),
    #[error("zlib: {0}")]
    Zlib(String),
    #[error("malformed header block: {0}")]
    MalformedHeaders(&'static str),
}

/// Why the reader loop stopped.
#[derive(Debug)]
enum End {
    /// Peer closed the connection between frames.
    Eof,
    /// Peer sent GOAWAY.
    PeerGoAway,
    /// Every user handle was dropped.
    UserGone,
    /// The writer task is gone (write error); nothing more can be sent.
    WriterGone,
    Error(FrameError),
}

impl From<FrameError> for End {
    fn from(e: FrameError) -> Self {
        End::Error(e)
    }
}

// ---------------------------------------------------------------------------
// Header compression
// ---------------------------------------------------------------------------

/// Inbound zlib context, shared by every header block of the session.
struct HeaderDecompressor {
    z: Decompress,
}

impl HeaderDecompressor {
    fn new() -> Self {
        Self {
            z: Decompress::new(true),
        }
    }

    /// Inflates one header block (a sync-flushed piece of the session's zlib
    /// stream), refusing output beyond `limit` bytes.
    fn decompress(&mut self, input: &[u8], limit: usize) -> Result<Vec<u8>, FrameError> {
        // One byte of headroom tells "exactly `limit` bytes" from "more".
        let cap_limit = limit.saturating_add(1);
        let initial = input.len().saturating_mul(4).max(64).min(cap_limit);
        let mut out: Vec<u8> = Vec::with_capacity(initial);
        let mut pos = 0usize;
        loop {
            if out.len() == out.capacity() {
                if out.len() >= cap_limit {
                    return Err(FrameError::HeaderBlockTooLarge);
                }
                let grow = out.capacity().max(256).min(cap_limit - out.len());
                out.reserve_exact(grow);
            }
            let rest = input.get(pos..).unwrap_or_default();
            let in_before = self.z.total_in();
            let out_before = out.len();
            let result = self.z.decompress_vec(rest, &mut out, FlushDecompress::Sync);
            let consumed = usize::try_from(self.z.total_in().wrapping_sub(in_before))
                .map_err(|_| FrameError::Zlib("input counter overflow".into()))?;
            pos = pos.saturating_add(consumed).min(input.len());
            if out.len() > limit {
                return Err(FrameError::HeaderBlockTooLarge);
            }
            match result {
                Ok(Status::StreamEnd) => {
                    return Err(FrameError::Zlib("peer ended the header zlib stream".into()))
                }
                Ok(Status::Ok) | Ok(Status::BufError) => {
                    let room_left = out.len() < out.capacity();
                    if pos >= input.len() && room_left {
                        return Ok(out);
                    }
                    if consumed == 0 && out.len() == out_before && room_left {
                        return Err(FrameError::Zlib("inflate made no progress".into()));
                    }
                }
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ADLER32) => {
                        self.z
                            .set_dictionary(HEADER_DICTIONARY)
                            .map_err(|e| FrameError::Zlib(e.to_string()))?;
                    }
                    Some(other) => return Err(FrameError::WrongDictionary(other)),
                    None => return Err(FrameError::Zlib(e.to_string())),
                },
            }
        }
    }
}

/// Outbound zlib context, owned by the writer task so blocks are compressed in
/// the order they are sent.
struct HeaderCompressor {
    z: Compress,
}

impl HeaderCompressor {
    fn new() -> Result<Self, FrameError> {
        // Best compression, like Go's spdy framer; the level does not matter
        // to the peer.
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(HEADER_DICTIONARY)
            .map_err(|e| FrameError::Zlib(e.to_string()))?;
        Ok(Self { z })
    }

    /// Compresses one header block and sync-flushes it, so the peer can
    /// decode it without waiting for later blocks.
    fn compress(&mut self, input: &[u8]) -> Result<Vec<u8>, FrameError> {
        let mut out: Vec<u8> = Vec::with_capacity(input.len().saturating_add(64));
        let mut pos = 0usize;
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            let rest = input.get(pos..).unwrap_or_default();
            let in_before = self.z.total_in();
            let out_before = out.len();
            self.z
                .compress_vec(rest, &mut out, FlushCompress::Sync)
                .map_err(|e| FrameError::Zlib(e.to_string()))?;
            let consumed = usize::try_from(self.z.total_in().wrapping_sub(in_before))
                .map_err(|_| FrameError::Zlib("input counter overflow".into()))?;
            pos = pos.saturating_add(consumed).min(input.len());
            let room_left = out.len() < out.capacity();
            if pos >= input.len() && room_left {
                return Ok(out);
            }
            if consumed == 0 && out.len() == out_before && room_left {
                return Err(FrameError::Zlib("deflate made no progress".into()));
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Wire format helpers
// ---------------------------------------------------------------------------

/// Bounds-checked reader over a frame payload.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(rest: &'a [u8]) -> Self {
        Self { rest }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        let (head, tail) = self.rest.split_first_chunk::<4>()?;
        self.rest = tail;
        Some(u32::from_be_bytes(*head))
    }
}

/// Parses a SPDY/3 name/value block: a 32-bit pair count, then per pair a
/// 32-bit length and name, a 32-bit length and value. NUL-separated values
/// become several pairs. Names are lowercased (the wire requires lowercase;
/// being lenient costs nothing).
fn parse_header_block(block: &[u8]) -> Result<Vec<(String, String)>, FrameError> {
    let mut c = Cursor::new(block);
    let count = c
        .u32()
        .ok_or(FrameError::MalformedHeaders("missing pair count"))?;
    let mut headers = Vec::new();
    for _ in 0..count {
        let name_len = c
            .u32()
            .ok_or(FrameError::MalformedHeaders("truncated name length"))?;
        let name = usize::try_from(name_len)
            .ok()
            .and_then(|n| c.take(n))
            .ok_or(FrameError::MalformedHeaders("truncated name"))?;
        if name.is_empty() {
            return Err(FrameError::MalformedHeaders("empty header name"));
        }
        let value_len = c
            .u32()
            .ok_or(FrameError::MalformedHeaders("truncated value length"))?;
        let value = usize::try_from(value_len)
            .ok()
            .and_then(|n| c.take(n))
            .ok_or(FrameError::MalformedHeaders("truncated value"))?;
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        for part in value.split(|&b| b == 0) {
            headers.push((name.clone(), String::from_utf8_lossy(part).into_owned()));
        }
    }
    if !c.rest.is_empty() {
        return Err(FrameError::MalformedHeaders(
            "trailing bytes after last pair",
        ));
    }
    Ok(headers)
}

/// Encodes a name/value block (names must already be lowercase).
fn encode_header_block(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.put_u32(u32::try_from(headers.len()).unwrap_or(u32::MAX));
    for (name, value) in headers {
        out.put_u32(u32::try_from(name.len()).unwrap_or(u32::MAX));
        out.put_slice(name.as_bytes());
        out.put_u32(u32::try_from(value.len()).unwrap_or(u32::MAX));
        out.put_slice(value.as_bytes());
    }
    out
}

fn put_control_header(buf: &mut BytesMut, frame_type: u16, flags: u8, len: usize) {
    buf.put_u16(0x8000 | VERSION);
    buf.put_u16(frame_type);
    let len = u32::try_from(len.min(MAX_FRAME_LEN)).unwrap_or(0);
    buf.put_u32((u32::from(flags) << 24) | len);
}

fn encode_outbound(
    frame: Outbound,
    compressor: &mut HeaderCompressor,
    buf: &mut BytesMut,
) -> Result<(), FrameError> {
    match frame {
        Outbound::SynReply { id } => {
            // An empty header block, as the kubelet (spdystream SendReply with
            // an empty http.Header) sends.
            let block = compressor.compress(&encode_header_block(&[]))?;
            let len = block.len().saturating_add(4);
            if len > MAX_FRAME_LEN {
                return Err(FrameError::ControlFrameTooLarge(len));
            }
            put_control_header(buf, TYPE_SYN_REPLY, 0, len);
            buf.put_u32(id & STREAM_ID_MASK);
            buf.put_slice(&block);
        }
        Outbound::Data { id, data, fin } => {
            let len = u32::try_from(data.len().min(MAX_FRAME_LEN)).unwrap_or(0);
            buf.put_u32(id & STREAM_ID_MASK);
            buf.put_u32((u32::from(if fin { FLAG_FIN } else { 0 }) << 24) | len);
            buf.put_slice(&data);
        }
        Outbound::Rst { id, status } => {
            put_control_header(buf, TYPE_RST_STREAM, 0, 8);
            buf.put_u32(id & STREAM_ID_MASK);
            buf.put_u32(status);
        }
        Outbound::Ping { id } => {
            put_control_header(buf, TYPE_PING, 0, 4);
            buf.put_u32(id);
        }
        Outbound::GoAway { last_good, status } => {
            put_control_header(buf, TYPE_GOAWAY, 0, 8);
            buf.put_u32(last_good & STREAM_ID_MASK);
            buf.put_u32(status);
        }
    }
    Ok(())
}

/// Reads an 8-byte frame header; `None` on a clean EOF before its first byte.
async fn read_frame_head<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<[u8; 8]>, FrameError> {
    let mut head = [0u8; 8];
    let mut filled = 0usize;
    while let Some(space) = head.get_mut(filled..).filter(|s| !s.is_empty()) {
        let n = r.read(space).await?;
        if n == 0 {
            return if filled == 0 {
                Ok(None)
            } else {
                Err(FrameError::Truncated)
            };
        }
        filled = filled.saturating_add(n);
    }
    Ok(Some(head))
}

async fn read_exact_or_truncated<R: AsyncRead + Unpin>(
    r: &mut R,
    buf: &mut [u8],
) -> Result<(), FrameError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(FrameError::Truncated),
        Err(e) => Err(FrameError::Io(e)),
    }
}

// ---------------------------------------------------------------------------
// Writer task
// ---------------------------------------------------------------------------

/// Shutdown request for the writer: the GOAWAY to send last, if any.
type GoAway = Option<(u32, u32)>;

async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut frames: mpsc::Receiver<Outbound>,
    mut shutdown: oneshot::Receiver<GoAway>,
) {
    let mut compressor = match HeaderCompressor::new() {
        Ok(c) => c,
        Err(e) => {
            debug!(error = %e, "spdy: cannot set up header compression");
            return;
        }
    };
    let mut buf = BytesMut::with_capacity(WRITE_BATCH);
    loop {
        tokio::select! {
            biased;
            goaway = &mut shutdown => {
                // Send what was queued before the session ended (e.g. a last
                // error message), then the GOAWAY. Bounded by the queue size.
                let goaway = goaway.ok().flatten();
                frames.close();
                while let Ok(frame) = frames.try_recv() {
                    if encode_outbound(frame, &mut compressor, &mut buf).is_err() {
                        break;
                    }
                }
                if let Some((last_good, status)) = goaway {
                    debug!(last_good, status, "spdy: sending GOAWAY");
                    let _ = encode_outbound(Outbound::GoAway { last_good, status }, &mut compressor, &mut buf);
                }
                let _ = writer.write_all(&buf).await;
                let _ = writer.flush().await;
                let _ = writer.shutdown().await;
                return;
            }
            frame = frames.recv() => {
                let Some(frame) = frame else {
                    let _ = writer.shutdown().await;
                    return;
                };
                let mut next = Some(frame);
                while let Some(frame) = next.take() {
                    if let Err(e) = encode_outbound(frame, &mut compressor, &mut buf) {
                        debug!(error = %e, "spdy: cannot encode frame");
                        return;
                    }
                    if buf.len() < WRITE_BATCH {
                        next = frames.try_recv().ok();
                    }
                }
                let result = async {
                    writer.write_all(&buf).await?;
                    writer.flush().await
                }
                .await;
                buf.clear();
                if let Err(e) = result {
                    debug!(error = %e, "spdy: write failed, ending session");
                    return;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reader task
// ---------------------------------------------------------------------------

struct Entry {
    shared: Arc<StreamShared>,
    /// `None` once the client sent FIN or our reader handle is gone.
    inbound: Option<mpsc::Sender<Bytes>>,
    remote_closed: bool,
}

impl Entry {
    /// Nothing more can happen on this stream that we need to track.
    fn finished(&self) -> bool {
        self.shared.is_reset()
            || (self.remote_closed && self.shared.is_local_closed())
            || Arc::strong_count(&self.shared) == 1
    }
}

struct Session {
    decompressor: HeaderDecompressor,
    streams: HashMap<u32, Entry>,
    frames: mpsc::Sender<Outbound>,
    accept: mpsc::Sender<Stream>,
    life: Weak<Life>,
    /// Highest stream id the client has used; new ids must exceed it.
    last_seen_id: u32,
    /// Highest stream id we accepted, reported in our GOAWAY.
    last_accepted_id: u32,
}

async fn read_loop<R: AsyncRead + Unpin>(
    reader: R,
    mut session: Session,
    mut life: oneshot::Receiver<()>,
    shutdown: oneshot::Sender<GoAway>,
    mut writer_task: JoinHandle<()>,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, reader);
    let frames = session.frames.clone();
    let end = tokio::select! {
        end = session.run(&mut reader) => end,
        _ = &mut life => End::UserGone,
        _ = frames.closed() => End::WriterGone,
    };
    drop(frames);
    let last_good = session.last_accepted_id;
    let goaway = match &end {
        End::Eof | End::UserGone => Some((last_good, GOAWAY_OK)),
        End::PeerGoAway | End::WriterGone | End::Error(FrameError::Io(_)) => None,
        End::Error(_) => Some((last_good, GOAWAY_PROTOCOL_ERROR)),
    };
    debug!(reason = ?end, "spdy: session ending");
    // Tell the writer first, so it sends the GOAWAY even if dropping the
    // session below closes its queue.
    let _ = shutdown.send(goaway);
    // Dropping the session drops every inbound sender (pending reads return
    // None) and the accept sender (Streams::next returns None).
    drop(session);
    if tokio::time::timeout(SHUTDOWN_LINGER, &mut writer_task)
        .await
        .is_err()
    {
        debug!("spdy: writer did not finish in time, aborting it");
        writer_task.abort();
    }
}

impl Session {
    async fn run<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> End {
        loop {
            if let Err(end) = self.step(r).await {
                return end;
            }
        }
    }

    async fn send(&self, frame: Outbound) -> Result<(), End> {
        self.frames.send(frame).await.map_err(|_| End::WriterGone)
    }

    /// Reads and handles one frame.
    async fn step<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<(), End> {
        let Some(head) = read_frame_head(r).await? else {
            return Err(End::Eof);
        };
        let [b0, b1, b2, b3, flags, l0, l1, l2] = head;
        let len = usize::try_from(u32::from_be_bytes([0, l0, l1, l2])).unwrap_or(usize::MAX);
        if b0 & 0x80 == 0 {
            let id = u32::from_be_bytes([b0, b1, b2, b3]) & STREAM_ID_MASK;
            return self.on_data(r, id, flags, len).await;
        }
        let version = u16::from_be_bytes([b0 & 0x7f, b1]);
        let frame_type = u16::from_be_bytes([b2, b3]);
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version).into());
        }
        if len > MAX_CONTROL_FRAME_LEN {
            return Err(FrameError::ControlFrameTooLarge(len).into());
        }
        let mut payload = vec![0u8; len];
        read_exact_or_truncated(r, &mut payload).await?;
        self.on_control(frame_type, flags, &payload).await
    }

    async fn on_control(&mut self, frame_type: u16, flags: u8, payload: &[u8]) -> Result<(), End> {
        let invalid = || FrameError::InvalidLength {
            frame_type,
            len: payload.len(),
        };
        let mut c = Cursor::new(payload);
        match frame_type {
            TYPE_SYN_STREAM => {
                let id = c.u32().ok_or_else(invalid)? & STREAM_ID_MASK;
                let _associated = c.u32().ok_or_else(invalid)?;
                let _priority_and_slot = c.take(2).ok_or_else(invalid)?;
                let block = self.decompressor.decompress(c.rest, MAX_HEADER_BLOCK_LEN)?;
                let headers = parse_header_block(&block)?;
                self.on_syn_stream(id, flags, headers).await
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                let id = c.u32().ok_or_else(invalid)? & STREAM_ID_MASK;
                // Always inflate, even if ignored: the zlib context is shared
                // by every later block.
                let block = self.decompressor.decompress(c.rest, MAX_HEADER_BLOCK_LEN)?;
                let headers = parse_header_block(&block)?;
                if id == 0 {
                    return Err(FrameError::ZeroStreamId.into());
                }
                debug!(
                    stream = id,
                    frame_type,
                    ?headers,
                    "spdy: ignoring header frame"
                );
                if frame_type == TYPE_HEADERS && flags & FLAG_FIN != 0 {
                    self.remote_fin(id);
                }
                Ok(())
            }
            TYPE_RST_STREAM => {
                let (Some(id), Some(status), true) = (c.u32(), c.u32(), c.rest.is_empty()) else {
                    return Err(invalid().into());
                };
                let id = id & STREAM_ID_MASK;
                debug!(stream = id, status, "spdy: RST_STREAM from peer");
                if let Some(entry) = self.streams.remove(&id) {
                    entry.shared.mark_reset();
                }
                Ok(())
            }
            TYPE_PING => {
                let (Some(id), true) = (c.u32(), c.rest.is_empty()) else {
                    return Err(invalid().into());
                };
                // Odd ids come from the client and are echoed; even ids would
                // be answers to our pings, and we send none.
                if id & 1 == 1 {
                    debug!(id, "spdy: answering PING");
                    self.send(Outbound::Ping { id }).await?;
                } else {
                    debug!(id, "spdy: ignoring PING with even id");
                }
                Ok(())
            }
            TYPE_GOAWAY => {
                // SPDY/3 GOAWAY is last-good-stream-id + status; accept the
                // SPDY/2 form without status too.
                let last_good = c.u32().ok_or_else(invalid)?;
                debug!(last_good, "spdy: GOAWAY from peer");
                Err(End::PeerGoAway)
            }
            TYPE_SETTINGS | TYPE_WINDOW_UPDATE => {
                // spdystream never sends these and does no flow control; if
                // some other client does, ignoring them is safe because we
                // never limit what we send by a window either.
                debug!(frame_type, "spdy: ignoring control frame");
                Ok(())
            }
            _ => {
                debug!(frame_type, "spdy: ignoring unknown control frame");
                Ok(())
            }
        }
    }

    async fn on_syn_stream(
        &mut self,
        id: u32,
        flags: u8,
        headers: Vec<(String, String)>,
    ) -> Result<(), End> {
        if id == 0 {
            return Err(FrameError::ZeroStreamId.into());
        }
        debug!(stream = id, flags, ?headers, "spdy: SYN_STREAM");
        if id & 1 == 0 || id <= self.last_seen_id {
            // spdystream answers a non-increasing id the same way.
            debug!(stream = id, last = self.last_seen_id, "spdy: bad stream id");
            return self
                .send(Outbound::Rst {
                    id,
                    status: RST_PROTOCOL_ERROR,
                })
                .await;
        }
        self.last_seen_id = id;
        if self.streams.len() >= MAX_STREAMS {
            self.streams.retain(|_, e| !e.finished());
        }
        if self.streams.len() >= MAX_STREAMS || self.accept.is_closed() {
            debug!(stream = id, "spdy: refusing stream");
            return self
                .send(Outbound::Rst {
                    id,
                    status: RST_REFUSED_STREAM,
                })
                .await;
        }
        let Some(life) = self.life.upgrade() else {
            return Err(End::UserGone);
        };
        // The reply goes into the outbound queue before the application can
        // write anything on the stream.
        self.send(Outbound::SynReply { id }).await?;
        self.last_accepted_id = id;

        let remote_closed = flags & FLAG_FIN != 0;
        let shared = Arc::new(StreamShared::new(flags & FLAG_UNIDIRECTIONAL != 0));
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        self.streams.insert(
            id,
            Entry {
                shared: shared.clone(),
                inbound: (!remote_closed).then_some(tx),
                remote_closed,
            },
        );
        let stream = Stream {
            id,
            headers,
            reader: StreamReader {
                rx,
                shared: shared.clone(),
                _life: life.clone(),
            },
            writer: StreamWriter {
                inner: Arc::new(WriterInner {
                    id,
                    shared,
                    frames: self.frames.clone(),
                    order: Mutex::new(()),
                    _life: life,
                }),
            },
        };
        if let Err(mpsc::error::SendError(stream)) = self.accept.send(stream).await {
            debug!(stream = id, "spdy: nobody accepts streams, cancelling");
            stream.writer.inner.shared.mark_reset();
            drop(stream);
            self.streams.remove(&id);
            self.send(Outbound::Rst {
                id,
                status: RST_CANCEL,
            })
            .await?;
        }
        Ok(())
    }

    async fn on_data<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        id: u32,
        flags: u8,
        len: usize,
    ) -> Result<(), End> {
        if id == 0 {
            return Err(FrameError::ZeroStreamId.into());
        }
        let mut remaining = len;
        while remaining > 0 {
            let n = remaining.min(INBOUND_CHUNK);
            let mut chunk = BytesMut::zeroed(n);
            read_exact_or_truncated(r, &mut chunk).await?;
            remaining -= n;
            self.deliver(id, chunk.freeze()).await;
        }
        if flags & FLAG_FIN != 0 {
            debug!(stream = id, "spdy: FIN from peer");
            self.remote_fin(id);
        }
        Ok(())
    }

    /// Hands data to the stream's reader, waiting while its queue is full;
    /// drops it if the stream is unknown, finished, reset or unread.
    async fn deliver(&mut self, id: u32, data: Bytes) {
        let Some(entry) = self.streams.get_mut(&id) else {
            debug!(stream = id, "spdy: data for unknown stream dropped");
            return;
        };
        let Some(tx) = entry.inbound.clone() else {
            debug!(stream = id, "spdy: data after FIN dropped");
            return;
        };
        let shared = entry.shared.clone();
        let reset = shared.reset_notify.notified();
        tokio::pin!(reset);
        reset.as_mut().enable();
        if shared.is_reset() {
            return;
        }
        let delivered = tokio::select! {
            sent = tx.send(data) => sent.is_ok(),
            _ = &mut reset => true,
        };
        if !delivered {
            debug!(
                stream = id,
                "spdy: stream reader dropped, discarding its data"
            );
            entry.inbound = None;
        }
    }

    fn remote_fin(&mut self, id: u32) {
        let Some(entry) = self.streams.get_mut(&id) else {
            return;
        };
        entry.remote_closed = true;
        entry.inbound = None;
        if entry.finished() {
            self.streams.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::DuplexStream;
    use tokio::time::timeout;

    const WAIT: Duration = Duration::from_secs(5);

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in data {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    /// A frame as the test client sees it.
    #[derive(Debug, PartialEq)]
    enum Frame {
        Control {
            frame_type: u16,
            flags: u8,
            payload: Vec<u8>,
        },
        Data {
            id: u32,
            flags: u8,
            data: Vec<u8>,
        },
    }

    /// Minimal client-side framer, independent of the session code except for
    /// the zlib wrappers (separate contexts, like a real peer).
    struct Client {
        io: DuplexStream,
        compressor: HeaderCompressor,
        decompressor: HeaderDecompressor,
    }

    impl Client {
        fn start() -> (Client, Streams) {
            let (client, server) = tokio::io::duplex(256 * 1024);
            let (r, w) = tokio::io::split(server);
            let streams = serve(r, w);
            let client = Client {
                io: client,
                compressor: HeaderCompressor::new().unwrap(),
                decompressor: HeaderDecompressor::new(),
            };
            (client, streams)
        }

        async fn raw(&mut self, bytes: &[u8]) {
            self.io.write_all(bytes).await.unwrap();
        }

        async fn control(&mut self, frame_type: u16, flags: u8, payload: &[u8]) {
            let mut buf = BytesMut::new();
            buf.put_u16(0x8003);
            buf.put_u16(frame_type);
            buf.put_u32((u32::from(flags) << 24) | payload.len() as u32);
            buf.put_slice(payload);
            self.raw(&buf).await;
        }

        fn syn_stream_bytes(&mut self, id: u32, flags: u8, headers: &[(&str, &str)]) -> Vec<u8> {
            let block = self
                .compressor
                .compress(&encode_header_block(headers))
                .unwrap();
            let mut payload = Vec::new();
            payload.put_u32(id);
            payload.put_u32(0);
            payload.put_u8(0);
            payload.put_u8(0);
            payload.put_slice(&block);
            let mut frame = Vec::new();
            frame.put_u16(0x8003);
            frame.put_u16(TYPE_SYN_STREAM);
            frame.put_u32((u32::from(flags) << 24) | payload.len() as u32);
            frame.put_slice(&payload);
            frame
        }

        async fn syn_stream(&mut self, id: u32, flags: u8, headers: &[(&str, &str)]) {
            let frame = self.syn_stream_bytes(id, flags, headers);
            self.raw(&frame).await;
        }

        async fn data(&mut self, id: u32, fin: bool, data: &[u8]) {
            let mut buf = BytesMut::new();
            buf.put_u32(id);
            buf.put_u32((u32::from(fin) << 24) | data.len() as u32);
            buf.put_slice(data);
            self.raw(&buf).await;
        }

        async fn ping(&mut self, id: u32) {
            self.control(TYPE_PING, 0, &id.to_be_bytes()).await;
        }

        async fn rst(&mut self, id: u32, status: u32) {
            let mut p = Vec::new();
            p.put_u32(id);
            p.put_u32(status);
            self.control(TYPE_RST_STREAM, 0, &p).await;
        }

        /// Next frame from the server, `None` on EOF.
        async fn frame(&mut self) -> Option<Frame> {
            timeout(WAIT, async {
                let mut head = [0u8; 8];
                match self.io.read_exact(&mut head).await {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return None,
                    Err(e) => panic!("client read: {e}"),
                }
                let flags = head[4];
                let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
                let mut payload = vec![0u8; len];
                self.io.read_exact(&mut payload).await.unwrap();
                if head[0] & 0x80 != 0 {
                    assert_eq!(u16::from_be_bytes([head[0] & 0x7f, head[1]]), 3);
                    Some(Frame::Control {
                        frame_type: u16::from_be_bytes([head[2], head[3]]),
                        flags,
                        payload,
                    })
                } else {
                    Some(Frame::Data {
                        id: u32::from_be_bytes([head[0], head[1], head[2], head[3]]),
                        flags,
                        data: payload,
                    })
                }
            })
            .await
            .expect("timed out waiting for a frame")
        }

        /// Expects a SYN_REPLY and returns its stream id and decoded headers.
        async fn syn_reply(&mut self) -> (u32, Vec<(String, String)>) {
            match self.frame().await {
                Some(Frame::Control {
                    frame_type: TYPE_SYN_REPLY,
                    flags: 0,
                    payload,
                }) => {
                    let id = u32::from_be_bytes(payload[..4].try_into().unwrap());
                    let block = self
                        .decompressor
                        .decompress(&payload[4..], MAX_HEADER_BLOCK_LEN)
                        .expect("SYN_REPLY header block must decode in the client's context");
                    (id, parse_header_block(&block).unwrap())
                }
                other => panic!("expected SYN_REPLY, got {other:?}"),
            }
        }

        /// Reads until EOF, returning the frames seen.
        async fn until_eof(&mut self) -> Vec<Frame> {
            let mut frames = Vec::new();
            while let Some(f) = self.frame().await {
                frames.push(f);
            }
            frames
        }
    }

    fn goaway_status(frames: &[Frame]) -> Option<u32> {
        frames.iter().find_map(|f| match f {
            Frame::Control {
                frame_type: TYPE_GOAWAY,
                payload,
                ..
            } => Some(u32::from_be_bytes(payload[4..8].try_into().unwrap())),
            _ => None,
        })
    }

    async fn next_stream(streams: &mut Streams) -> Stream {
        timeout(WAIT, streams.next())
            .await
            .expect("timed out waiting for a stream")
            .expect("session ended")
    }

    async fn ended(streams: &mut Streams) {
        assert!(timeout(WAIT, streams.next())
            .await
            .expect("timed out waiting for the session to end")
            .is_none());
    }

    const PF_HEADERS: [(&str, &str); 3] = [
        ("streamtype", "error"),
        ("port", "8080"),
        ("requestid", "0"),
    ];

    #[test]
    fn dictionary_is_the_spdy3_dictionary() {
        assert_eq!(HEADER_DICTIONARY.len(), 1423);
        assert_eq!(adler32(HEADER_DICTIONARY), 0xe3c6_a7c2);
        assert_eq!(DICTIONARY_ADLER32, 0xe3c6_a7c2);
        assert!(HEADER_DICTIONARY.starts_with(b"\0\0\0\x07options\0\0\0\x04head"));
        assert!(HEADER_DICTIONARY.ends_with(b"charset=iso-8859-1,utf-,*,enq=0."));
    }

    #[test]
    fn compressed_blocks_announce_the_dictionary() {
        let mut c = HeaderCompressor::new().unwrap();
        let block = c.compress(&encode_header_block(&[])).unwrap();
        // zlib header: CM=8, FDICT set, then the dictionary's adler32.
        assert_eq!(block[0] & 0x0f, 8);
        assert_ne!(block[1] & 0x20, 0, "FDICT flag");
        assert_eq!(u16::from_be_bytes([block[0], block[1]]) % 31, 0);
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        // Sync flush marker at the end of every block.
        assert!(block.ends_with(&[0, 0, 0xff, 0xff]));
        // Later blocks continue the stream: no second zlib header.
        let second = c.compress(&encode_header_block(&[])).unwrap();
        assert!(!second.starts_with(&block[..6]));
        assert!(second.ends_with(&[0, 0, 0xff, 0xff]));
    }

    /// Header blocks captured from other SPDY/3 implementations (node-spdy's
    /// parser tests), decoded with a fresh context each.
    #[test]
    fn decodes_third_party_header_blocks() {
        // SYN_REPLY with no headers.
        let frame = hex("80030002000000140000000178f9e3c6a7c202a6230600000000ffff");
        let block = HeaderDecompressor::new()
            .decompress(&frame[12..], MAX_HEADER_BLOCK_LEN)
            .unwrap();
        assert!(parse_header_block(&block).unwrap().is_empty());
        // SYN_REPLY whose block is a stored (uncompressed) zlib block.
        let frame = hex(
            "8003000200000057000000013830e3c6a7c2004300bcff000000030000000574686572650000\
             00057468657265000000073a73746174757300000006323030204f4b000000083a7665727369\
             6f6e00000008485454502f312e31000000ffff",
        );
        let block = HeaderDecompressor::new()
            .decompress(&frame[12..], MAX_HEADER_BLOCK_LEN)
            .unwrap();
        let headers = parse_header_block(&block).unwrap();
        assert_eq!(
            headers,
            vec![
                ("there".to_string(), "there".to_string()),
                (":status".to_string(), "200 OK".to_string()),
                (":version".to_string(), "HTTP/1.1".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn captured_syn_stream_opens_a_stream() {
        // node-spdy's SYN_STREAM fixture (stream 1, ":method: GET", ":path: /").
        let (mut client, mut streams) = Client::start();
        client
            .raw(&hex(
                "800300010000002c0000000100000000000078f9e3c6a7c202e50e507ab442a45a77d710\
                 5006b32a4804974d8cfa00000000ffff",
            ))
            .await;
        let stream = next_stream(&mut streams).await;
        assert_eq!(stream.id, 1);
        assert_eq!(stream.header(":method"), Some("GET"));
        assert_eq!(stream.header(":path"), Some("/"));
        assert_eq!(client.syn_reply().await.0, 1);
    }

    /// Two SYN_STREAMs as client-go's port-forwarder sends them, compressed by
    /// Python's zlib (level 9 like Go's framer) in one shared context.
    #[tokio::test]
    async fn independently_compressed_blocks_share_one_context() {
        let first = hex(
            "800300010000003d0000000100000000000078f9e3c6a7c202253a48f95b044eea16061606409a\
             b308125f99a074cc68004e892545a989b9d0c2863515141500000000ffff",
        );
        let second = hex("800300010000001600000003000000000000225333a8a44a04000000ffff");
        // The second block only makes sense after the first one.
        assert!(HeaderDecompressor::new()
            .decompress(&second[18..], MAX_HEADER_BLOCK_LEN)
            .is_err());

        let (mut client, mut streams) = Client::start();
        client.raw(&first).await;
        client.raw(&second).await;
        let error = next_stream(&mut streams).await;
        let data = next_stream(&mut streams).await;
        assert_eq!((error.id, data.id), (1, 3));
        assert_eq!(error.header("streamType"), Some("error"));
        assert_eq!(data.header("STREAMTYPE"), Some("data"));
        for s in [&error, &data] {
            assert_eq!(s.header("port"), Some("8080"));
            assert_eq!(s.header("requestid"), Some("0"));
        }
        assert_eq!(client.syn_reply().await.0, 1);
        assert_eq!(client.syn_reply().await.0, 3);
    }

    #[tokio::test]
    async fn syn_stream_gets_syn_reply_and_headers_decode_across_frames() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        client
            .syn_stream(
                3,
                0,
                &[("streamtype", "data"), ("port", "8080"), ("requestid", "0")],
            )
            .await;
        let s1 = next_stream(&mut streams).await;
        let s3 = next_stream(&mut streams).await;
        assert_eq!(s1.id, 1);
        assert_eq!(s1.header("streamtype"), Some("error"));
        assert_eq!(s3.id, 3);
        assert_eq!(s3.header("streamtype"), Some("data"));
        assert_eq!(s3.header("port"), Some("8080"));
        // Both replies decode in ONE client context: the server must not
        // restart its zlib stream per frame.
        let (id1, h1) = client.syn_reply().await;
        let (id3, h3) = client.syn_reply().await;
        assert_eq!((id1, id3), (1, 3));
        assert!(h1.is_empty() && h3.is_empty());
    }

    #[tokio::test]
    async fn multi_valued_headers_are_split() {
        let (mut client, mut streams) = Client::start();
        client
            .syn_stream(1, 0, &[("x-multi", "a\0b"), ("port", "1")])
            .await;
        let s = next_stream(&mut streams).await;
        assert_eq!(
            s.headers,
            vec![
                ("x-multi".to_string(), "a".to_string()),
                ("x-multi".to_string(), "b".to_string()),
                ("port".to_string(), "1".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn data_flows_both_ways_and_fin_half_closes() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        assert_eq!(client.syn_reply().await.0, 1);

        client.data(1, false, b"hello").await;
        client.data(1, false, b"").await;
        client.data(1, true, b" world").await;
        let mut got = Vec::new();
        while let Some(chunk) = timeout(WAIT, s.reader.read()).await.unwrap() {
            assert!(!chunk.is_empty());
            got.extend_from_slice(&chunk);
        }
        assert_eq!(got, b"hello world");

        // Our side is still open after the client's FIN.
        s.writer.write(Bytes::from_static(b"pong")).await.unwrap();
        assert_eq!(
            client.frame().await,
            Some(Frame::Data {
                id: 1,
                flags: 0,
                data: b"pong".to_vec()
            })
        );
        s.writer.close().await.unwrap();
        assert_eq!(
            client.frame().await,
            Some(Frame::Data {
                id: 1,
                flags: FLAG_FIN,
                data: vec![]
            })
        );
        s.writer.close().await.unwrap();
        assert!(matches!(
            s.writer.write(Bytes::from_static(b"x")).await,
            Err(SpdyError::StreamClosed)
        ));
    }

    #[tokio::test]
    async fn empty_fin_data_frame_closes_the_error_stream() {
        // client-go closes its write side of the error stream right away.
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        client.syn_reply().await;
        client.data(1, true, b"").await;
        assert_eq!(timeout(WAIT, s.reader.read()).await.unwrap(), None);
        // The error stream still carries a message to the client.
        s.writer.write(Bytes::from_static(b"boom")).await.unwrap();
        s.writer.close().await.unwrap();
        assert_eq!(
            client.frame().await,
            Some(Frame::Data {
                id: 1,
                flags: 0,
                data: b"boom".to_vec()
            })
        );
        assert_eq!(
            client.frame().await,
            Some(Frame::Data {
                id: 1,
                flags: FLAG_FIN,
                data: vec![]
            })
        );
    }

    #[test]
    fn tiny_limits_are_errors_not_panics() {
        let frame = hex("80030002000000140000000178f9e3c6a7c202a6230600000000ffff");
        for limit in [0, 1, 3] {
            assert!(matches!(
                HeaderDecompressor::new().decompress(&frame[12..], limit),
                Err(FrameError::HeaderBlockTooLarge)
            ));
        }
        assert!(HeaderDecompressor::new()
            .decompress(&frame[12..], 4)
            .is_ok());
    }

    #[tokio::test]
    async fn unidirectional_stream_cannot_be_written() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, FLAG_UNIDIRECTIONAL, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        assert!(matches!(
            s.writer.write(Bytes::from_static(b"x")).await,
            Err(SpdyError::StreamClosed)
        ));
        client.data(1, true, b"in").await;
        assert_eq!(s.reader.read().await.as_deref(), Some(&b"in"[..]));
        assert_eq!(s.reader.read().await, None);
    }

    #[tokio::test]
    async fn syn_stream_with_fin_has_no_inbound_data() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, FLAG_FIN, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        assert_eq!(timeout(WAIT, s.reader.read()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn large_writes_and_reads_are_chunked() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        client.syn_reply().await;

        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = s.writer.clone();
        let payload = Bytes::from(big.clone());
        let send = tokio::spawn(async move { writer.write(payload).await });
        let mut received = Vec::new();
        while received.len() < big.len() {
            match client.frame().await {
                Some(Frame::Data {
                    id: 1,
                    flags: 0,
                    data,
                }) => {
                    assert!(!data.is_empty() && data.len() <= OUTBOUND_CHUNK);
                    received.extend_from_slice(&data);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, big);
        send.await.unwrap().unwrap();

        // One inbound frame larger than INBOUND_CHUNK arrives in pieces.
        let frame_data = big[..100_000].to_vec();
        let reader = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(chunk) = s.reader.read().await {
                assert!(chunk.len() <= INBOUND_CHUNK);
                got.extend_from_slice(&chunk);
            }
            got
        });
        client.data(1, true, &frame_data).await;
        assert_eq!(timeout(WAIT, reader).await.unwrap().unwrap(), frame_data);
    }

    #[tokio::test]
    async fn pings_are_echoed() {
        let (mut client, _streams) = Client::start();
        client.ping(1).await;
        client.ping(2).await; // even: a reply to a ping we never sent; ignored
        client.ping(0x7fff_fffd).await;
        for id in [1u32, 0x7fff_fffd] {
            assert_eq!(
                client.frame().await,
                Some(Frame::Control {
                    frame_type: TYPE_PING,
                    flags: 0,
                    payload: id.to_be_bytes().to_vec()
                })
            );
        }
    }

    #[tokio::test]
    async fn rst_from_client_ends_the_stream() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        client.syn_reply().await;
        let pending = tokio::spawn(async move {
            let r = s.reader.read().await;
            (r, s)
        });
        // The test runtime is single-threaded: yielding lets the reader block on its read.
        tokio::task::yield_now().await;
        client.rst(1, RST_CANCEL).await;
        let (r, s) = timeout(WAIT, pending).await.unwrap().unwrap();
        assert_eq!(r, None);
        assert!(matches!(
            s.writer.write(Bytes::from_static(b"x")).await,
            Err(SpdyError::StreamReset)
        ));
        assert!(matches!(
            s.writer.close().await,
            Err(SpdyError::StreamReset)
        ));
        // The session itself goes on.
        client.ping(5).await;
        assert!(matches!(
            client.frame().await,
            Some(Frame::Control {
                frame_type: TYPE_PING,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn local_reset_sends_rst_cancel() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        client.syn_reply().await;
        s.writer.reset().await;
        s.writer.reset().await; // once only
        assert_eq!(s.reader.read().await, None);
        let mut p = Vec::new();
        p.put_u32(1);
        p.put_u32(RST_CANCEL);
        assert_eq!(
            client.frame().await,
            Some(Frame::Control {
                frame_type: TYPE_RST_STREAM,
                flags: 0,
                payload: p
            })
        );
        // Data still in flight from the client is dropped quietly.
        client.data(1, false, b"late").await;
        client.ping(3).await;
        assert!(matches!(
            client.frame().await,
            Some(Frame::Control {
                frame_type: TYPE_PING,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn dropped_writer_sends_fin() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let s = next_stream(&mut streams).await;
        client.syn_reply().await;
        drop(s.writer);
        assert_eq!(
            client.frame().await,
            Some(Frame::Data {
                id: 1,
                flags: FLAG_FIN,
                data: vec![]
            })
        );
    }

    #[tokio::test]
    async fn bad_stream_ids_are_reset_and_the_session_continues() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(3, 0, &PF_HEADERS).await;
        client.syn_stream(1, 0, &PF_HEADERS).await; // not increasing
        client.syn_stream(4, 0, &PF_HEADERS).await; // even
        client.syn_stream(5, 0, &PF_HEADERS).await; // fine; context still in sync
        assert_eq!(next_stream(&mut streams).await.id, 3);
        assert_eq!(next_stream(&mut streams).await.id, 5);
        assert_eq!(client.syn_reply().await.0, 3);
        for id in [1u32, 4] {
            let mut p = Vec::new();
            p.put_u32(id);
            p.put_u32(RST_PROTOCOL_ERROR);
            assert_eq!(
                client.frame().await,
                Some(Frame::Control {
                    frame_type: TYPE_RST_STREAM,
                    flags: 0,
                    payload: p
                })
            );
        }
        assert_eq!(client.syn_reply().await.0, 5);
    }

    #[tokio::test]
    async fn streams_beyond_the_limit_are_refused() {
        let (mut client, mut streams) = Client::start();
        let accepted = tokio::spawn(async move {
            let mut kept = Vec::new();
            while let Some(s) = streams.next().await {
                kept.push(s);
            }
            kept.len()
        });
        let limit = u32::try_from(MAX_STREAMS).unwrap();
        for n in 0..=limit {
            client.syn_stream(2 * n + 1, 0, &PF_HEADERS).await;
        }
        let refused_id = 2 * limit + 1;
        let mut replies = 0;
        loop {
            match client.frame().await {
                Some(Frame::Control {
                    frame_type: TYPE_SYN_REPLY,
                    payload,
                    ..
                }) => {
                    client
                        .decompressor
                        .decompress(&payload[4..], MAX_HEADER_BLOCK_LEN)
                        .unwrap();
                    replies += 1;
                }
                Some(Frame::Control {
                    frame_type: TYPE_RST_STREAM,
                    payload,
                    ..
                }) => {
                    assert_eq!(
                        u32::from_be_bytes(payload[..4].try_into().unwrap()),
                        refused_id
                    );
                    assert_eq!(
                        u32::from_be_bytes(payload[4..8].try_into().unwrap()),
                        RST_REFUSED_STREAM
                    );
                    break;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(replies, MAX_STREAMS);
        drop(client);
        assert_eq!(timeout(WAIT, accepted).await.unwrap().unwrap(), MAX_STREAMS);
    }

    #[tokio::test]
    async fn finished_streams_free_their_slot() {
        let (mut client, mut streams) = Client::start();
        let limit = u32::try_from(MAX_STREAMS).unwrap();
        for n in 0..limit {
            client.syn_stream(2 * n + 1, 0, &PF_HEADERS).await;
            let s = next_stream(&mut streams).await;
            drop(s); // handles gone: the slot is reclaimable
        }
        client.syn_stream(2 * limit + 1, 0, &PF_HEADERS).await;
        assert_eq!(next_stream(&mut streams).await.id, 2 * limit + 1);
    }

    #[tokio::test]
    async fn window_update_settings_and_unknown_frames_are_ignored() {
        let (mut client, _streams) = Client::start();
        client
            .control(TYPE_WINDOW_UPDATE, 0, &[0, 0, 0, 1, 0, 1, 0, 0])
            .await;
        client
            .control(TYPE_SETTINGS, 0, &[0, 0, 0, 1, 0, 0, 0, 7, 0, 1, 0, 0])
            .await;
        client.control(0x00ff, 0, b"whatever").await;
        client.data(99, false, b"no such stream").await;
        client.ping(7).await;
        assert!(matches!(
            client.frame().await,
            Some(Frame::Control {
                frame_type: TYPE_PING,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn goaway_from_client_ends_the_session() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        client
            .control(TYPE_GOAWAY, 0, &[0, 0, 0, 1, 0, 0, 0, 0])
            .await;
        ended(&mut streams).await;
        assert_eq!(timeout(WAIT, s.reader.read()).await.unwrap(), None);
        let frames = client.until_eof().await;
        assert_eq!(goaway_status(&frames), None, "no GOAWAY answered to GOAWAY");
        assert!(matches!(
            s.writer.write(Bytes::from_static(b"x")).await,
            Err(SpdyError::SessionClosed)
        ));
    }

    #[tokio::test]
    async fn eof_ends_the_session() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        client.io.shutdown().await.unwrap();
        ended(&mut streams).await;
        assert_eq!(timeout(WAIT, s.reader.read()).await.unwrap(), None);
        let frames = client.until_eof().await;
        assert_eq!(goaway_status(&frames), Some(GOAWAY_OK));
    }

    #[tokio::test]
    async fn truncated_frame_at_eof_ends_the_session() {
        for cut in [3usize, 8, 12, 20] {
            let (mut client, mut streams) = Client::start();
            client.syn_stream(1, 0, &PF_HEADERS).await;
            let mut s = next_stream(&mut streams).await;
            let mut frame = client.syn_stream_bytes(3, 0, &PF_HEADERS);
            frame.truncate(cut);
            client.raw(&frame).await;
            client.io.shutdown().await.unwrap();
            ended(&mut streams).await;
            assert_eq!(timeout(WAIT, s.reader.read()).await.unwrap(), None);
            let frames = client.until_eof().await;
            assert_eq!(
                goaway_status(&frames),
                Some(GOAWAY_PROTOCOL_ERROR),
                "cut {cut}"
            );
        }
        // A data frame cut short, too.
        let (mut client, mut streams) = Client::start();
        client.raw(&[0, 0, 0, 1, 0, 0, 0, 10, b'x']).await;
        client.io.shutdown().await.unwrap();
        ended(&mut streams).await;
    }

    async fn expect_protocol_error(bytes: &[u8]) {
        expect_protocol_error_then(bytes, false).await;
    }

    /// `eof`: also close the client's side, for input that could still be the
    /// start of a long frame.
    async fn expect_protocol_error_then(bytes: &[u8], eof: bool) {
        let (mut client, mut streams) = Client::start();
        client.raw(bytes).await;
        if eof {
            client.io.shutdown().await.unwrap();
        }
        ended(&mut streams).await;
        let frames = client.until_eof().await;
        assert_eq!(
            goaway_status(&frames),
            Some(GOAWAY_PROTOCOL_ERROR),
            "{bytes:02x?}"
        );
    }

    #[tokio::test]
    async fn malformed_input_ends_the_session_with_goaway() {
        // Garbage: reads as a 2 MiB DATA frame for an unknown stream, then
        // the connection ends in its middle.
        expect_protocol_error_then(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true).await;
        // SPDY/2 control frame.
        expect_protocol_error(&[0x80, 0x02, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]).await;
        // PING with the wrong length.
        expect_protocol_error(&[0x80, 0x03, 0, 6, 0, 0, 0, 2, 0, 1]).await;
        // RST_STREAM with the wrong length.
        expect_protocol_error(&[0x80, 0x03, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1]).await;
        // Control frame above the limit.
        expect_protocol_error(&[0x80, 0x03, 0, 1, 0, 0xff, 0xff, 0xff]).await;
        // DATA on stream 0.
        expect_protocol_error(&[0, 0, 0, 0, 0, 0, 0, 1, 0]).await;
        // SYN_STREAM whose header block is not zlib.
        let mut bad = vec![0x80, 0x03, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        bad.extend_from_slice(&[1, 2, 3, 4]);
        expect_protocol_error(&bad).await;
        // SYN_STREAM too short for its fixed fields.
        expect_protocol_error(&[0x80, 0x03, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1]).await;
        // zlib stream asking for another dictionary.
        let mut other = vec![0x80, 0x03, 0, 1, 0, 0, 0, 18, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        other.extend_from_slice(&[0x78, 0xbb, 1, 2, 3, 4, 0, 0]);
        expect_protocol_error(&other).await;
    }

    #[tokio::test]
    async fn malformed_header_blocks_end_the_session() {
        let mut compressor = HeaderCompressor::new().unwrap();
        let frame_with = |c: &mut HeaderCompressor, block: &[u8]| {
            let z = c.compress(block).unwrap();
            let mut f = Vec::new();
            f.put_u16(0x8003);
            f.put_u16(TYPE_SYN_STREAM);
            f.put_u32(10 + z.len() as u32);
            f.put_u32(1);
            f.put_u32(0);
            f.put_u16(0);
            f.put_slice(&z);
            f
        };
        // Count says two pairs, block has one.
        let mut block = encode_header_block(&[("a", "b")]);
        block[3] = 2;
        expect_protocol_error(&frame_with(&mut compressor, &block)).await;
        // Name length far beyond the block.
        let mut compressor = HeaderCompressor::new().unwrap();
        expect_protocol_error(&frame_with(
            &mut compressor,
            &[0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, b'a'],
        ))
        .await;
        // Huge pair count with no pairs.
        let mut compressor = HeaderCompressor::new().unwrap();
        expect_protocol_error(&frame_with(&mut compressor, &[0xff, 0xff, 0xff, 0xff])).await;
        // Trailing bytes.
        let mut compressor = HeaderCompressor::new().unwrap();
        let mut block = encode_header_block(&[("a", "b")]);
        block.push(0);
        expect_protocol_error(&frame_with(&mut compressor, &block)).await;
        // Decompresses beyond the limit (a few KiB of zeros inflate to >1 MiB).
        let mut compressor = HeaderCompressor::new().unwrap();
        let mut huge = vec![0u8; MAX_HEADER_BLOCK_LEN + 16];
        huge[3] = 1;
        expect_protocol_error(&frame_with(&mut compressor, &huge)).await;
    }

    /// Cheap deterministic fuzzing: random bytes, and valid sessions with one
    /// byte flipped or cut short. Nothing may panic or hang.
    #[tokio::test]
    async fn random_and_mutated_input_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut template_client = Client::start().0;
        let mut valid = template_client.syn_stream_bytes(1, 0, &PF_HEADERS);
        valid.extend(template_client.syn_stream_bytes(3, 0, &PF_HEADERS));
        valid.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 3, b'a', b'b', b'c']);
        valid.extend_from_slice(&[0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]);
        valid.extend_from_slice(&[0, 0, 0, 3, 1, 0, 0, 0]);
        for round in 0..300 {
            let input: Vec<u8> = if round % 3 == 0 {
                (0..(rand() % 200)).map(|_| rand() as u8).collect()
            } else {
                let mut v = valid.clone();
                let i = (rand() as usize) % v.len();
                v[i] ^= 1 << (rand() % 8);
                if round % 3 == 2 {
                    v.truncate((rand() as usize) % v.len());
                }
                v
            };
            let (mut client, mut streams) = Client::start();
            let consumer = tokio::spawn(async move {
                while let Some(mut s) = streams.next().await {
                    tokio::spawn(async move { while s.reader.read().await.is_some() {} });
                }
            });
            client.raw(&input).await;
            client.io.shutdown().await.unwrap();
            let _ = client.until_eof().await;
            timeout(WAIT, consumer).await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn dropping_every_handle_ends_the_session() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let s = next_stream(&mut streams).await;
        client.syn_reply().await;
        drop(streams);
        // A stream handle still alive keeps the session up.
        client.ping(1).await;
        assert!(matches!(
            client.frame().await,
            Some(Frame::Control {
                frame_type: TYPE_PING,
                ..
            })
        ));
        // New streams are refused while nobody accepts them.
        client.syn_stream(3, 0, &PF_HEADERS).await;
        let mut p = Vec::new();
        p.put_u32(3);
        p.put_u32(RST_REFUSED_STREAM);
        assert_eq!(
            client.frame().await,
            Some(Frame::Control {
                frame_type: TYPE_RST_STREAM,
                flags: 0,
                payload: p
            })
        );
        drop(s);
        let frames = client.until_eof().await;
        assert_eq!(goaway_status(&frames), Some(GOAWAY_OK));
    }

    #[tokio::test]
    async fn slow_reader_applies_backpressure_without_losing_data() {
        let (mut client, mut streams) = Client::start();
        client.syn_stream(1, 0, &PF_HEADERS).await;
        let mut s = next_stream(&mut streams).await;
        client.syn_reply().await;
        let total = INBOUND_QUEUE * 4;
        let writer = tokio::spawn(async move {
            for i in 0..total {
                client.data(1, false, &[i as u8; 100]).await;
            }
            client.data(1, true, b"").await;
            client
        });
        let mut got = Vec::new();
        while let Some(chunk) = timeout(WAIT, s.reader.read()).await.unwrap() {
            // A slow consumer: the writer runs ahead until the bounded queue pushes back.
            tokio::task::yield_now().await;
            got.push(chunk);
        }
        assert_eq!(got.len(), total);
        for (i, chunk) in got.iter().enumerate() {
            assert_eq!(&chunk[..], &[i as u8; 100]);
        }
        drop(writer.await.unwrap());
    }
}
