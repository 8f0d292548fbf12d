//! Write coalescing above TLS: gathers what HTTP/2 writes between the moments the connection
//! task yields, so one batch of frames becomes one TLS record and one system call.
//!
//! HTTP/2 writes frame by frame and flushes whenever its connection task has nothing more to
//! write *right now*; but the frames of one exchange come from several tasks (the request or
//! handler task queues HEADERS, then DATA, then trailers), so an eager flush sends each as its
//! own record and its own TCP segment, and wakes the peer for each. [`CoalescingIo`] buffers
//! writes and, when asked to flush, first yields once (the task is woken at once and goes to the
//! back of the run queue); frames queued meanwhile join the same write. A flush that finds the
//! buffer already deferred once writes it out, so nothing waits longer than one pass of the
//! scheduler, and a full buffer or a shutdown always writes at once.
//!
//! A stream can also be *held*: its flushes keep the bytes until a [`Gate`] is released or
//! [`HOLD_LIMIT`] has passed ([`CoalescingIo::held`], for a client: the HTTP/2 preface and
//! SETTINGS leave with the first request), until the peer's first bytes arrive
//! ([`CoalescingIo::held_until_read`]), or, for an HTTP/2 server whose client's first bytes
//! carry a request, until its answer ([`CoalescingIo::held_until_answer`]: the server's
//! SETTINGS, window update and acknowledgement of the client's SETTINGS leave with the
//! response, and a one-call client's acknowledgement of those then leaves with its GOAWAY).
//! The client's time limit keeps a connection that is never used from looking unfinished to
//! the server (which then could not drain it on shutdown); why the server's hold cannot stall
//! a connection is said at [`CoalescingIo::held_until_answer`].

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The longest a client holds its first bytes waiting for its first call.
pub const HOLD_LIMIT: Duration = Duration::from_millis(10);

/// Plaintext bytes gathered before they are written (one TLS record holds at most 16 KiB).
pub const WRITE_COALESCE_BYTES: usize = 16 * 1024;

/// A stream whose writes are gathered until a flush that has yielded once (see the module
/// documentation). Reads pass through.
#[derive(Debug)]
pub struct CoalescingIo<T> {
    inner: T,
    buf: Vec<u8>,
    /// Bytes of `buf` already written to `inner`.
    written: usize,
    /// The current flush request has already yielded once.
    deferred: bool,
    /// While set and not released, flushes keep the bytes.
    hold: Hold,
    /// Shut down: later writes are errors.
    shut: bool,
}

#[derive(Debug)]
enum Hold {
    No,
    /// Until the gate is released or the timer (armed by the first held flush) fires.
    Until(Gate, Option<Pin<Box<tokio::time::Sleep>>>),
    /// Until the peer's first bytes arrive, which must happen before the deadline; then as
    /// the [`AfterRead`] says.
    UntilRead(Pin<Box<tokio::time::Sleep>>, Duration, AfterRead),
    /// HTTP/2 server: the client's bytes read so far (fewer than [`ANSWER_HOLD_MAX_READ`]);
    /// the next flush holds ([`Hold::UntilAnswer`]) if they carry a request, else writes.
    Scanning(Vec<u8>),
    /// HTTP/2 server whose client sent a request with its first bytes: until a frame that
    /// answers it (HEADERS, RST_STREAM or GOAWAY) is buffered, or the client sends more.
    UntilAnswer,
}

/// What a stream held until the peer's first bytes does once they arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterRead {
    /// Writes from then on.
    Release,
    /// [`Hold::Scanning`] the client's bytes up to the next flush: [`Hold::UntilAnswer`] if
    /// they hold an HTTP/2 request (HEADERS) and are fewer than [`ANSWER_HOLD_MAX_READ`],
    /// writes otherwise.
    HoldForAnswer,
}

/// A client whose first bytes are this many or more may be uploading a body that needs the
/// server's window updates: the server does not hold its first frames for it.
const ANSWER_HOLD_MAX_READ: usize = 16 * 1024;

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
const H2_CLIENT_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Releases the bytes a held [`CoalescingIo`] keeps: the next flush writes them.
#[derive(Debug, Clone, Default)]
pub struct Gate(Arc<AtomicBool>);

impl Gate {
    /// Lets the stream's flushes write from now on.
    pub fn release(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn released(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl<T> CoalescingIo<T> {
    /// Wraps `inner`.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(WRITE_COALESCE_BYTES),
            written: 0,
            deferred: false,
            hold: Hold::No,
            shut: false,
        }
    }

    /// Wraps `inner`, holding everything written (flushes report success and keep the bytes)
    /// until the returned gate is released or [`HOLD_LIMIT`] after the first held flush; a full
    /// buffer and a shutdown still write. For a client whose first bytes matter only together
    /// with its first request: nothing it waits for depends on them. Needs a Tokio runtime
    /// with time enabled.
    pub fn held(inner: T) -> (Self, Gate) {
        let gate = Gate::default();
        (Self::held_by(inner, gate.clone()), gate)
    }

    /// Like [`CoalescingIo::held`], with a gate shared with another layer (a
    /// [`FlightHold`] below TLS).
    pub fn held_by(inner: T, gate: Gate) -> Self {
        let mut io = Self::new(inner);
        io.hold = Hold::Until(gate, None);
        io
    }

    /// Wraps `inner`, holding everything written until a read returns the peer's first bytes
    /// (a full buffer and a shutdown still write). For a server whose peer speaks first: a
    /// peer that sends nothing within `limit` gets a `TimedOut` read error (it would otherwise
    /// hold the connection, and keep a graceful shutdown waiting, for nothing). Needs a Tokio
    /// runtime with time enabled.
    pub fn held_until_read(inner: T, limit: Duration) -> Self {
        Self::held_until_read_then(inner, limit, AfterRead::Release)
    }

    fn held_until_read_then(inner: T, limit: Duration, after: AfterRead) -> Self {
        let mut io = Self::new(inner);
        io.hold = Hold::UntilRead(Box::pin(tokio::time::sleep(limit)), limit, after);
        io
    }

    /// For an HTTP/2 server: like [`CoalescingIo::held_until_read`]; and if the client's first
    /// bytes carry a request (a HEADERS frame, as a gRPC client's preface, SETTINGS and first
    /// call do), the server keeps holding until a frame that answers it (HEADERS, RST_STREAM or
    /// GOAWAY) is buffered at a flush, or until the client sends anything more. The server's
    /// SETTINGS, window update and acknowledgement of the client's SETTINGS then leave with the
    /// response: one write and one wake-up of each side less per connection.
    ///
    /// This cannot stall a connection. The client has sent a request and nothing since, so the
    /// server owes an answer, which ends the hold (tonic answers every call, with an error or a
    /// timeout if need be, and a shutdown sends GOAWAY). What the held frames could matter
    /// for, the client needs only after sending more (flow-control credit for a larger body,
    /// acknowledgements of its PINGs), and anything it sends ends the hold. A client whose
    /// first bytes hold no request (one that waits for the server's SETTINGS first) or are
    /// [`ANSWER_HOLD_MAX_READ`] or more is not held for at all; nor is anything held once a
    /// full buffer had to be written. No timer is needed.
    pub fn held_until_answer(inner: T, limit: Duration) -> Self {
        Self::held_until_read_then(inner, limit, AfterRead::HoldForAnswer)
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }
}

/// Reads from `inner` into `buf`; also says whether bytes arrived (the peer has spoken).
fn poll_read_some<T: AsyncRead + Unpin>(
    inner: &mut T,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
) -> (Poll<io::Result<()>>, bool) {
    let before = buf.filled().len();
    let r = Pin::new(inner).poll_read(cx, buf);
    let got = matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before;
    (r, got)
}

/// HTTP/2 frame types that answer or end a request (RFC 9113 §6).
const H2_HEADERS: u8 = 0x1;
const H2_RST_STREAM: u8 = 0x3;
const H2_GOAWAY: u8 = 0x7;

/// Whether `data`, HTTP/2 frames from a frame boundary on, holds a frame of a type that
/// `wanted` accepts. A frame cut off at the end still counts by its header.
fn has_http2_frame(data: &[u8], wanted: impl Fn(u8) -> bool) -> bool {
    let mut rest = data;
    while let [l0, l1, l2, kind, _flags, _, _, _, _, tail @ ..] = rest {
        if wanted(*kind) {
            return true;
        }
        let len = usize::from(*l0) << 16 | usize::from(*l1) << 8 | usize::from(*l2);
        rest = tail.get(len..).unwrap_or_default();
    }
    false
}

/// Whether `data` holds a frame that answers or ends a request: HEADERS, RST_STREAM or GOAWAY.
fn has_http2_answer(data: &[u8]) -> bool {
    has_http2_frame(data, |k| {
        matches!(k, H2_HEADERS | H2_RST_STREAM | H2_GOAWAY)
    })
}

/// Whether a client's first bytes (the connection preface, then frames) carry a request.
fn has_http2_request(first: &[u8]) -> bool {
    let frames = first.strip_prefix(H2_CLIENT_PREFACE).unwrap_or(first);
    has_http2_frame(frames, |k| k == H2_HEADERS)
}

/// Appends every slice to `buf`; returns how many bytes that was.
fn append_all<'a>(buf: &mut Vec<u8>, slices: impl IntoIterator<Item = &'a [u8]>) -> usize {
    let start = buf.len();
    for b in slices {
        buf.extend_from_slice(b);
    }
    buf.len() - start
}

/// Writes `buf[*written..]` to `inner`, advancing `written`; ready when all of it is out.
/// Vectored, as TLS writes its records: one slice is the same system call either way.
fn poll_drain<T: AsyncWrite + Unpin>(
    inner: &mut T,
    buf: &[u8],
    written: &mut usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<()>> {
    while *written < buf.len() {
        let rest = buf.get(*written..).unwrap_or_default();
        let n = ready!(Pin::new(&mut *inner).poll_write_vectored(cx, &[io::IoSlice::new(rest)]))?;
        if n == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "the connection accepted no more bytes",
            )));
        }
        *written += n;
    }
    Poll::Ready(Ok(()))
}

impl<T: AsyncWrite + Unpin> CoalescingIo<T> {
    /// Writes out everything buffered. Ends a hold for an answer: once bytes have left (a full
    /// buffer, a shutdown), frame boundaries are no longer tracked and nothing is held.
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if matches!(self.hold, Hold::Scanning(_) | Hold::UntilAnswer) {
            self.hold = Hold::No;
        }
        ready!(poll_drain(
            &mut self.inner,
            &self.buf,
            &mut self.written,
            cx
        ))?;
        self.buf.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for CoalescingIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let (r, got) = poll_read_some(&mut this.inner, cx, buf);
        let new = buf.filled().get(before..).unwrap_or_default();
        match &mut this.hold {
            // The client sent more: whatever it may be waiting for goes out at the next flush.
            Hold::UntilAnswer if got => this.hold = Hold::No,
            Hold::Scanning(seen) if got => {
                if seen.len() + new.len() < ANSWER_HOLD_MAX_READ {
                    seen.extend_from_slice(new);
                } else {
                    this.hold = Hold::No;
                }
            }
            _ => {}
        }
        if let Hold::UntilRead(deadline, limit, after) = &mut this.hold {
            match &r {
                Poll::Ready(Ok(())) if got => {
                    this.hold =
                        if *after == AfterRead::HoldForAnswer && new.len() < ANSWER_HOLD_MAX_READ {
                            Hold::Scanning(new.to_vec())
                        } else {
                            Hold::No
                        };
                }
                Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "the peer sent nothing within {} s of the handshake",
                            limit.as_secs()
                        ),
                    )));
                }
                _ => {}
            }
        }
        r
    }
}

fn shut_error() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the stream was shut down")
}

impl<T: AsyncWrite + Unpin> AsyncWrite for CoalescingIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shut {
            return Poll::Ready(Err(shut_error()));
        }
        if this.buf.len() + data.len() > WRITE_COALESCE_BYTES {
            ready!(this.poll_write_out(cx))?;
            if data.len() >= WRITE_COALESCE_BYTES {
                return Pin::new(&mut this.inner).poll_write(cx, data);
            }
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.shut {
            return Poll::Ready(Err(shut_error()));
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if this.buf.len() + total > WRITE_COALESCE_BYTES {
            ready!(this.poll_write_out(cx))?;
            if total >= WRITE_COALESCE_BYTES {
                return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
            }
        }
        append_all(&mut this.buf, bufs.iter().map(|b| &**b));
        Poll::Ready(Ok(total))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.hold {
            Hold::No => {}
            Hold::UntilRead(..) => return Poll::Ready(Ok(())),
            Hold::Scanning(seen) => {
                let answered = has_http2_answer(this.buf.get(this.written..).unwrap_or_default());
                if has_http2_request(seen) && !answered {
                    this.hold = Hold::UntilAnswer;
                    return Poll::Ready(Ok(()));
                }
                this.hold = Hold::No;
            }
            Hold::UntilAnswer => {
                if !has_http2_answer(this.buf.get(this.written..).unwrap_or_default()) {
                    return Poll::Ready(Ok(()));
                }
                this.hold = Hold::No;
            }
            Hold::Until(gate, timer) => {
                if !gate.released() {
                    // Armed by the first held flush; when it fires, the task is woken and
                    // flushes again (HTTP/2 flushes on every poll of its connection).
                    let timer =
                        timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(HOLD_LIMIT)));
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Ready(Ok(()));
                    }
                }
                this.hold = Hold::No;
            }
        }
        if this.buf.len() > this.written && !this.deferred {
            // Yield once: whatever the other tasks of this exchange queue before the task runs
            // again joins this write.
            this.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        ready!(this.poll_write_out(cx))?;
        this.deferred = false;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.shut = true;
        ready!(this.poll_write_out(cx))?;
        this.deferred = false;
        ready!(Pin::new(&mut this.inner).poll_flush(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

/// Below TLS, for a client: keeps the client's last TLS 1.3 handshake flight (Certificate,
/// CertificateVerify, Finished: encrypted records, perhaps after a ChangeCipherSpec) until the
/// [`Gate`] is released, so it leaves in one write with the first request: one system call and
/// one wake-up of the server less. The server does nothing with that flight before the client's
/// first request anyway.
///
/// Writes pass straight through until the server has spoken; the first write after that is
/// kept unless it carries a plaintext handshake record (a second ClientHello, after a
/// HelloRetryRequest: the server waits for it, so it must leave at once). Kept bytes leave
/// when the gate is released, at the first write or flush [`HOLD_LIMIT`] or more after the
/// first kept flush, when [`FLIGHT_HOLD_BYTES`] are kept, or at shutdown. There is no timer
/// here: the layer above must flush once the limit has passed, as a
/// [`CoalescingIo::held_by`] on the same gate does (its clock starts later, after the
/// handshake). A timer per connection would cost the runtime a wake-up per connection.
#[derive(Debug)]
pub struct FlightHold<T> {
    inner: T,
    buf: Vec<u8>,
    written: usize,
    state: Flight,
    gate: Gate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flight {
    /// Writes pass through.
    Passing,
    /// The server has spoken: the next write decides.
    Answered,
    /// Keeping writes; the first kept flush was at the given time.
    Holding(Option<tokio::time::Instant>),
    /// Released: pass through (after writing what was kept).
    Open,
}

/// The most a [`FlightHold`] keeps; beyond this it opens (a handshake flight with evidence is
/// a few KiB).
pub const FLIGHT_HOLD_BYTES: usize = 64 * 1024;

/// TLS record content type of a plaintext handshake record (RFC 8446 §5.1).
const TLS_HANDSHAKE: u8 = 22;

/// Whether `data`, a sequence of whole TLS records, holds a plaintext handshake record.
/// Anything that does not parse as records counts as not: it is kept like a flight.
fn has_plaintext_handshake(data: &[u8]) -> bool {
    let mut rest = data;
    while let [kind, _, _, hi, lo, tail @ ..] = rest {
        if *kind == TLS_HANDSHAKE {
            return true;
        }
        let len = usize::from(u16::from_be_bytes([*hi, *lo]));
        rest = tail.get(len..).unwrap_or_default();
    }
    false
}

impl<T> FlightHold<T> {
    /// Wraps `inner`; the returned gate releases what is kept.
    pub fn new(inner: T) -> (Self, Gate) {
        let gate = Gate::default();
        (
            Self {
                inner,
                buf: Vec::new(),
                written: 0,
                state: Flight::Passing,
                gate: gate.clone(),
            },
            gate,
        )
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Decides about a write of `data`: whether it is kept (or queued behind kept bytes).
    fn keeps(&mut self, data: &[&[u8]]) -> bool {
        if self.state == Flight::Answered {
            let joined = data.concat();
            self.state = if has_plaintext_handshake(&joined) {
                Flight::Passing
            } else {
                Flight::Holding(None)
            };
        }
        self.holding() || self.buf.len() > self.written
    }

    /// Whether writes are kept right now; opens for good once released, timed out or full.
    fn holding(&mut self) -> bool {
        if let Flight::Holding(since) = self.state {
            let expired = since.is_some_and(|t| t.elapsed() >= HOLD_LIMIT);
            if self.gate.released() || expired || self.buf.len() >= FLIGHT_HOLD_BYTES {
                self.state = Flight::Open;
            }
        }
        matches!(self.state, Flight::Holding(_))
    }
}

impl<T: AsyncWrite + Unpin> FlightHold<T> {
    fn poll_write_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(poll_drain(
            &mut self.inner,
            &self.buf,
            &mut self.written,
            cx
        ))?;
        // Kept bytes are written once; afterwards the buffer is not needed again.
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for FlightHold<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (r, got) = poll_read_some(&mut this.inner, cx, buf);
        if this.state == Flight::Passing && got {
            this.state = Flight::Answered;
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for FlightHold<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.keeps(&[data]) {
            // Kept, or behind kept bytes that are not written yet: order is preserved.
            this.buf.extend_from_slice(data);
            return Poll::Ready(Ok(data.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let slices: Vec<&[u8]> = bufs.iter().map(|b| &**b).collect();
        if this.keeps(&slices) {
            return Poll::Ready(Ok(append_all(&mut this.buf, slices)));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.holding() {
            if let Flight::Holding(since @ None) = &mut this.state {
                *since = Some(tokio::time::Instant::now());
            }
            return Poll::Ready(Ok(()));
        }
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.state = Flight::Open;
        ready!(this.poll_write_out(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A sink that records each write call.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        flushes: usize,
        shut: bool,
        /// What reads return (then end of stream).
        to_read: Vec<u8>,
    }

    impl AsyncRead for Recorder {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = this.to_read.len().min(buf.remaining());
            buf.put_slice(&this.to_read[..n]);
            this.to_read.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.get_mut().writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().flushes += 1;
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.get_mut().shut = true;
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn frames_before_a_flush_become_one_write() {
        let mut io = CoalescingIo::new(Recorder::default());
        io.write_all(b"HEADERS").await.unwrap();
        io.write_all(b"DATA").await.unwrap();
        assert!(
            io.get_ref().writes.is_empty(),
            "nothing written before the flush"
        );
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, vec![b"HEADERSDATA".to_vec()]);
        assert_eq!(io.get_ref().flushes, 1);
        // An empty flush writes nothing and does not yield.
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes.len(), 1);
    }

    #[test]
    fn a_flush_yields_once_then_writes() {
        let mut io = CoalescingIo::new(Recorder::default());
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        let mut pin = Pin::new(&mut io);
        assert!(matches!(
            pin.as_mut().poll_write(&mut cx, b"a"),
            Poll::Ready(Ok(1))
        ));
        assert!(
            pin.as_mut().poll_flush(&mut cx).is_pending(),
            "first flush yields"
        );
        // Written between the two polls: joins the same write.
        assert!(matches!(
            pin.as_mut().poll_write(&mut cx, b"b"),
            Poll::Ready(Ok(1))
        ));
        assert!(matches!(
            pin.as_mut().poll_flush(&mut cx),
            Poll::Ready(Ok(()))
        ));
        assert_eq!(io.get_ref().writes, vec![b"ab".to_vec()]);
    }

    #[tokio::test]
    async fn a_held_stream_keeps_its_bytes_until_released() {
        let (mut io, gate) = CoalescingIo::held(Recorder::default());
        io.write_all(b"PREFACE").await.unwrap();
        io.flush().await.unwrap();
        assert!(
            io.get_ref().writes.is_empty(),
            "held: the flush kept the bytes"
        );
        io.flush().await.unwrap();
        assert!(
            io.get_ref().writes.is_empty(),
            "held: the flush kept the bytes"
        );
        gate.release();
        io.write_all(b"REQUEST").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, vec![b"PREFACEREQUEST".to_vec()]);
        // Shutdown writes even while held.
        let (mut io, _gate) = CoalescingIo::held(Recorder::default());
        io.write_all(b"bye").await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(io.get_ref().writes, vec![b"bye".to_vec()]);
        let e = io.write_all(b"late").await.unwrap_err();
        assert_eq!(
            e.kind(),
            io::ErrorKind::BrokenPipe,
            "no writes after shutdown"
        );
    }

    /// A client that never calls still sends its first bytes, after the hold's time limit.
    #[tokio::test(start_paused = true)]
    async fn a_held_stream_writes_after_the_time_limit() {
        let (mut io, _gate) = CoalescingIo::held(Recorder::default());
        io.write_all(b"PREFACE").await.unwrap();
        io.flush().await.unwrap();
        assert!(io.get_ref().writes.is_empty());
        tokio::time::advance(HOLD_LIMIT + Duration::from_millis(1)).await;
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, vec![b"PREFACE".to_vec()]);
    }

    fn replying(reply: &[u8]) -> Recorder {
        Recorder {
            to_read: reply.to_vec(),
            ..Recorder::default()
        }
    }

    /// Below TLS: the ClientHello passes, what follows the server's flight waits for the
    /// first call and then leaves in one write with it; afterwards writes pass again.
    #[tokio::test]
    async fn a_client_flight_waits_for_the_first_call() {
        let (mut io, gate) = FlightHold::new(replying(b"SERVER FLIGHT"));
        io.write_all(b"CLIENT HELLO").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, vec![b"CLIENT HELLO".to_vec()]);
        let mut flight = [0u8; 13];
        io.read_exact(&mut flight).await.unwrap();
        io.write_all(b"FINISHED").await.unwrap();
        io.flush().await.unwrap();
        io.write_all(b"PREFACE").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes.len(), 1, "kept once the server spoke");
        gate.release();
        io.write_all(b"REQUEST").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(
            io.get_ref().writes,
            vec![b"CLIENT HELLO".to_vec(), b"FINISHEDPREFACEREQUEST".to_vec()]
        );
        io.write_all(b"MORE").await.unwrap();
        assert_eq!(io.get_ref().writes.last().unwrap(), b"MORE", "open again");
    }

    /// A client that never calls: its flight leaves with the first flush after the time
    /// limit, or at shutdown; a flight too big to keep leaves at once.
    #[tokio::test(start_paused = true)]
    async fn a_kept_flight_leaves_after_the_limit_at_shutdown_or_when_large() {
        let (mut io, _gate) = FlightHold::new(replying(b"S"));
        io.read_exact(&mut [0u8; 1]).await.unwrap();
        io.write_all(b"FINISHED").await.unwrap();
        io.flush().await.unwrap();
        tokio::time::advance(HOLD_LIMIT - Duration::from_millis(1)).await;
        io.flush().await.unwrap();
        assert!(io.get_ref().writes.is_empty(), "still within the limit");
        tokio::time::advance(Duration::from_millis(2)).await;
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, vec![b"FINISHED".to_vec()]);

        let (mut io, _gate) = FlightHold::new(replying(b"S"));
        io.read_exact(&mut [0u8; 1]).await.unwrap();
        io.write_all(b"FINISHED").await.unwrap();
        io.flush().await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(io.get_ref().writes, vec![b"FINISHED".to_vec()]);
        assert!(io.get_ref().shut);

        let (mut io, _gate) = FlightHold::new(replying(b"S"));
        io.read_exact(&mut [0u8; 1]).await.unwrap();
        io.write_all(&vec![7u8; FLIGHT_HOLD_BYTES]).await.unwrap();
        io.write_all(b"next").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes.len(), 1, "opened when full");
        assert_eq!(io.get_ref().writes[0].len(), FLIGHT_HOLD_BYTES + 4);
    }

    /// A peer that takes at most three bytes per write and refuses every other write once.
    #[derive(Default)]
    struct Trickle {
        got: Vec<u8>,
        refuse_next: bool,
        to_read: Vec<u8>,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let this = self.get_mut();
            this.refuse_next = !this.refuse_next;
            if !this.refuse_next {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = data.len().min(3);
            this.got.extend_from_slice(&data[..n]);
            Poll::Ready(Ok(n))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Trickle {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let n = this.to_read.len().min(buf.remaining());
            buf.put_slice(&this.to_read[..n]);
            this.to_read.drain(..n);
            Poll::Ready(Ok(()))
        }
    }

    /// Partial and refused writes of the stream below: kept bytes, bytes written behind them
    /// while they are half out, and later writes all arrive once and in order.
    #[tokio::test]
    async fn a_kept_flight_survives_partial_writes() {
        let (mut io, gate) = FlightHold::new(Trickle {
            to_read: b"S".to_vec(),
            ..Trickle::default()
        });
        io.write_all(b"HELLO").await.unwrap();
        io.read_exact(&mut [0u8; 1]).await.unwrap();
        io.write_all(b"FINISHED").await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().got, b"HELLO", "the flight is kept");
        gate.release();
        // One poll of the flush: at most three bytes go before the peer refuses.
        let waker = std::task::Waker::noop();
        let mut cx = Context::from_waker(waker);
        assert!(Pin::new(&mut io).poll_flush(&mut cx).is_pending());
        let got = &io.get_ref().got;
        assert!(got.len() <= b"HELLOFIN".len() && b"HELLOFINISHED".starts_with(got));
        io.write_all(b"REQUEST").await.unwrap();
        io.flush().await.unwrap();
        io.write_all(b"MORE").await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(io.get_ref().got, b"HELLOFINISHEDREQUESTMORE");
    }

    /// After a HelloRetryRequest the client's next write is a second ClientHello (a plaintext
    /// handshake record, here behind a ChangeCipherSpec): the server waits for it, so it
    /// passes; the encrypted flight after the next answer is kept.
    #[tokio::test]
    async fn a_retried_client_hello_is_not_kept() {
        let (mut io, _gate) = FlightHold::new(replying(b"HRRSERVER FLIGHT"));
        io.read_exact(&mut [0u8; 3]).await.unwrap();
        let ccs = [20u8, 3, 3, 0, 1, 1];
        let hello = [22u8, 3, 3, 0, 2, 1, 0];
        let both = [&ccs[..], &hello[..]].concat();
        let n = io
            .write_vectored(&[io::IoSlice::new(&ccs), io::IoSlice::new(&hello)])
            .await
            .unwrap();
        io.write_all(&both[n..]).await.unwrap();
        assert_eq!(
            io.get_ref().writes.concat(),
            [&ccs[..], &hello[..]].concat()
        );
        io.read_exact(&mut [0u8; 13]).await.unwrap();
        let finished = [23u8, 3, 3, 0, 2, 9, 9];
        io.write_all(&finished).await.unwrap();
        io.flush().await.unwrap();
        let passed = io.get_ref().writes.len();
        assert_eq!(
            io.get_ref().writes.concat(),
            both,
            "the encrypted flight is kept"
        );
        assert!(passed >= 1);
        assert!(has_plaintext_handshake(&hello));
        assert!(!has_plaintext_handshake(
            &[&ccs[..], &finished[..]].concat()
        ));
        assert!(
            !has_plaintext_handshake(&[22u8, 3]),
            "a fragment is not a record"
        );
    }

    #[tokio::test]
    async fn a_full_buffer_is_written_at_once_and_big_writes_pass_through() {
        let mut io = CoalescingIo::new(Recorder::default());
        let chunk = vec![1u8; WRITE_COALESCE_BYTES - 10];
        io.write_all(&chunk).await.unwrap();
        io.write_all(&[2u8; 20]).await.unwrap();
        assert_eq!(
            io.get_ref().writes,
            vec![chunk.clone()],
            "the full buffer went out"
        );
        let big = vec![3u8; WRITE_COALESCE_BYTES + 1];
        io.write_all(&big).await.unwrap();
        assert_eq!(io.get_ref().writes.len(), 3);
        assert_eq!(io.get_ref().writes[1], vec![2u8; 20]);
        assert_eq!(io.get_ref().writes[2], big);
        io.write_all(b"tail").await.unwrap();
        io.shutdown().await.unwrap();
        assert_eq!(
            io.get_ref().writes[3],
            b"tail".to_vec(),
            "shutdown writes the rest"
        );
        assert!(io.get_ref().shut);
    }

    #[tokio::test]
    async fn bytes_arrive_in_order_over_a_socket() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reader = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).await.unwrap();
            all
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut io = CoalescingIo::new(tcp);
        let mut expected = Vec::new();
        for i in 0..2000u32 {
            let piece = vec![(i % 251) as u8; (i as usize * 37) % 5000];
            io.write_all(&piece).await.unwrap();
            expected.extend_from_slice(&piece);
            if i % 7 == 0 {
                io.flush().await.unwrap();
            }
        }
        io.shutdown().await.unwrap();
        assert_eq!(reader.await.unwrap(), expected);
    }

    /// Over real TLS (a held client, a server held until it reads, flushes in between), both
    /// directions arrive complete and in order, and the reader sees a clean close.
    #[tokio::test]
    async fn held_tls_streams_deliver_in_order() {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
        let server_cfg = rustls::ServerConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.cert.der().clone()).unwrap();
        let client_cfg = rustls::ClientConfig::builder_with_provider(crate::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_cfg));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let mut io = CoalescingIo::held_until_read(tls, Duration::from_secs(30));
            // Held: the greeting waits for the client's first bytes.
            io.write_all(b"server hello;").await.unwrap();
            io.flush().await.unwrap();
            let mut got = Vec::new();
            io.read_to_end(&mut got).await.unwrap();
            io.write_all(&got).await.unwrap();
            io.shutdown().await.unwrap();
            got
        });
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        // As the gRPC client stacks them: the handshake's last flight kept below TLS, the
        // first plaintext above it, one gate for both.
        let (tcp, gate) = FlightHold::new(tcp);
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client_cfg))
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        assert!(
            !tls.get_ref().0.buf.is_empty(),
            "the client's Finished is kept"
        );
        let mut io = CoalescingIo::held_by(tls, gate.clone());
        let mut sent = Vec::new();
        for i in 0..300u32 {
            let piece = vec![(i % 251) as u8; (i as usize * 101) % 40_000];
            io.write_all(&piece).await.unwrap();
            sent.extend_from_slice(&piece);
            if i == 3 {
                gate.release();
            }
            if i % 5 == 0 {
                io.flush().await.unwrap();
            }
        }
        io.shutdown().await.unwrap();
        let mut back = Vec::new();
        io.read_to_end(&mut back).await.unwrap();
        assert_eq!(server.await.unwrap(), sent);
        assert_eq!(back.get(..13), Some(&b"server hello;"[..]));
        assert_eq!(back.get(13..), Some(&sent[..]));
    }

    /// An HTTP/2 frame: 9-byte header (length, type, flags, stream) and payload.
    fn frame(kind: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], kind, 0];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn answers_are_found_by_frame_type() {
        let settings = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]);
        let window = frame(0x8, 0, &[0, 1, 0, 0]);
        let headers = frame(H2_HEADERS, 1, b"\x88");
        assert!(!has_http2_answer(&[]));
        assert!(!has_http2_answer(
            &[settings.clone(), window.clone()].concat()
        ));
        assert!(has_http2_answer(
            &[settings.clone(), window.clone(), headers.clone()].concat()
        ));
        assert!(has_http2_answer(&frame(H2_RST_STREAM, 1, &[0, 0, 0, 8])));
        assert!(has_http2_answer(&frame(H2_GOAWAY, 0, &[0; 8])));
        // A HEADERS frame whose payload is not all there yet counts by its header.
        assert!(has_http2_answer(
            &[settings.clone(), headers[..9].to_vec()].concat()
        ));
        // A payload byte that looks like a HEADERS type is not a frame header.
        let data = frame(0x0, 1, &[0, 0, 0, H2_HEADERS, 0, 0, 0, 0, 1]);
        assert!(!has_http2_answer(&data));
        // Lengths past the end, short headers, garbage: no panic, no answer.
        assert!(!has_http2_answer(&[
            0xff, 0xff, 0xff, 0x0, 0, 0, 0, 0, 0, 1
        ]));
        assert!(!has_http2_answer(&[0, 0, 0, H2_HEADERS]));
    }

    /// A gRPC client's first bytes: the preface, its SETTINGS, a request.
    fn client_first_bytes() -> Vec<u8> {
        [
            H2_CLIENT_PREFACE.to_vec(),
            frame(0x4, 0, &[0, 2, 0, 0, 0, 0]),
            frame(H2_HEADERS, 1, b"\x83\x86"),
            frame(0x0, 1, &[0, 0, 0, 0, 0]),
        ]
        .concat()
    }

    /// Reads `len` bytes of the client's as HTTP/2 servers do: the preface alone, then frames.
    async fn read_as_a_server(io: &mut CoalescingIo<Recorder>, len: usize) {
        let mut preface = [0u8; 24];
        io.read_exact(&mut preface).await.unwrap();
        let mut frames = vec![0u8; len - 24];
        io.read_exact(&mut frames).await.unwrap();
    }

    fn answer_held(to_read: Vec<u8>) -> CoalescingIo<Recorder> {
        CoalescingIo::held_until_answer(
            Recorder {
                to_read,
                ..Recorder::default()
            },
            Duration::from_secs(10),
        )
    }

    #[test]
    fn requests_are_found_after_the_preface() {
        assert!(has_http2_request(&client_first_bytes()));
        let settings_only = [H2_CLIENT_PREFACE.to_vec(), frame(0x4, 0, &[])].concat();
        assert!(!has_http2_request(&settings_only));
        assert!(!has_http2_request(H2_CLIENT_PREFACE));
        assert!(!has_http2_request(&H2_CLIENT_PREFACE[..10]));
        assert!(!has_http2_request(b""));
    }

    /// An HTTP/2 server's stream: its SETTINGS wait for the client's first bytes, then (with
    /// the window update and the acknowledgement) for the answer to the request those bytes
    /// carry, and all of it leaves in one write.
    #[tokio::test]
    async fn a_server_holds_its_first_frames_until_the_answer() {
        let first = client_first_bytes();
        let mut io = answer_held(first.clone());
        let settings = frame(0x4, 0, &[0, 3, 0, 0, 0, 100]);
        io.write_all(&settings).await.unwrap();
        io.flush().await.unwrap();
        read_as_a_server(&mut io, first.len()).await;
        let ack = frame(0x4, 0, &[]);
        let window = frame(0x8, 0, &[0, 1, 0, 0]);
        io.write_all(&[ack.clone(), window.clone()].concat())
            .await
            .unwrap();
        io.flush().await.unwrap();
        assert!(
            io.get_ref().writes.is_empty(),
            "held after the client's request until the answer"
        );
        let response = [frame(H2_HEADERS, 1, b"\x88"), frame(0x0, 1, b"body")].concat();
        io.write_all(&response).await.unwrap();
        io.flush().await.unwrap();
        let expected = [settings, ack, window, response].concat();
        assert_eq!(io.get_ref().writes, vec![expected], "one write, in order");
        // Released for good: later frames leave at their flush.
        let ping = frame(0x6, 0, &[0; 8]);
        io.write_all(&ping).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes.get(1), Some(&ping));
    }

    /// Whatever the client sends after its request ends the hold: it may be waiting for what
    /// is held (window credit for more of its body, the acknowledgement of a PING).
    #[tokio::test]
    async fn a_client_that_sends_more_ends_the_hold() {
        let first = client_first_bytes();
        let mut io = answer_held(first.clone());
        read_as_a_server(&mut io, first.len()).await;
        let window = frame(0x8, 0, &[0, 1, 0, 0]);
        io.write_all(&window).await.unwrap();
        io.flush().await.unwrap();
        assert!(io.get_ref().writes.is_empty());
        io.inner.to_read = frame(0x6, 0, &[7; 8]);
        let mut ping = [0u8; 17];
        io.read_exact(&mut ping).await.unwrap();
        let pong = frame(0x6, 0x0, &[7; 8]);
        io.write_all(&pong).await.unwrap();
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes, vec![[window, pong].concat()]);
    }

    /// Not held for at all: a client whose first bytes carry no request (it may wait for the
    /// server's SETTINGS before sending one), or so many bytes that it may be uploading.
    #[tokio::test]
    async fn no_hold_without_a_request_or_for_a_large_upload() {
        let settings_only = [H2_CLIENT_PREFACE.to_vec(), frame(0x4, 0, &[])].concat();
        let big = [
            client_first_bytes(),
            frame(0x0, 1, &vec![0; ANSWER_HOLD_MAX_READ]),
        ]
        .concat();
        for first in [settings_only, big] {
            let mut io = answer_held(first.clone());
            let settings = frame(0x4, 0, &[]);
            io.write_all(&settings).await.unwrap();
            io.flush().await.unwrap();
            read_as_a_server(&mut io, first.len()).await;
            io.flush().await.unwrap();
            assert_eq!(io.get_ref().writes, vec![settings]);
        }
    }

    /// A full buffer is written while holding, and ends the hold.
    #[tokio::test]
    async fn a_full_buffer_ends_the_hold() {
        let first = client_first_bytes();
        let mut io = answer_held(first.clone());
        read_as_a_server(&mut io, first.len()).await;
        let data = frame(0x0, 1, &vec![1; WRITE_COALESCE_BYTES - 100]);
        io.write_all(&data).await.unwrap();
        io.flush().await.unwrap();
        assert!(io.get_ref().writes.is_empty());
        io.write_all(&data).await.unwrap();
        assert_eq!(io.get_ref().writes.len(), 1, "the full buffer is written");
        io.flush().await.unwrap();
        assert_eq!(io.get_ref().writes.len(), 2, "and nothing is held after it");
    }

    /// A held-until-read stream whose peer says nothing fails its read at the deadline, and a
    /// peer that speaks in time releases the hold.
    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (ours, _silent_peer) = tokio::io::duplex(1024);
        let mut io = CoalescingIo::held_until_read(ours, Duration::from_secs(10));
        io.write_all(b"SETTINGS").await.unwrap();
        io.flush().await.unwrap();
        let mut buf = [0u8; 16];
        let e = io.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");

        let (ours, mut peer2) = tokio::io::duplex(1024);
        let mut io = CoalescingIo::held_until_read(ours, Duration::from_secs(10));
        io.write_all(b"SETTINGS").await.unwrap();
        io.flush().await.unwrap();
        peer2.write_all(b"PREFACE").await.unwrap();
        assert_eq!(io.read(&mut buf).await.unwrap(), 7);
        io.flush().await.unwrap();
        let mut got = [0u8; 8];
        peer2.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"SETTINGS", "released by the peer's bytes");
        tokio::time::advance(Duration::from_secs(60)).await;
        peer2.write_all(b"more").await.unwrap();
        assert_eq!(
            io.read(&mut buf).await.unwrap(),
            4,
            "no deadline once the peer spoke"
        );
    }
}
