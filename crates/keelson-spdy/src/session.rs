//! A SPDY/3.1 session over any byte stream, in either role: the client opens streams (odd ids)
//! and waits for their replies, the server accepts the streams the peer opens (even ids when it
//! opens its own). Each stream is a duplex byte channel (tokio `AsyncRead` + `AsyncWrite`) whose
//! `shutdown` sends FIN. PINGs from the peer are answered. As moby/spdystream (what kubectl,
//! client-go, the kubelet and containerd use), there is no flow control: WINDOW_UPDATE frames are
//! ignored and never sent; a stream whose reader stops reading holds the whole session back.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::PollSender;

use crate::frame::{Decoder, Encoder, Frame, status};
use crate::headers::Headers;

/// Errors of a session and its streams.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spdy session is closed")]
    Closed,
    #[error("spdy stream {id} was reset by the peer (status {status})")]
    Reset { id: u32, status: u32 },
    #[error("spdy stream {id} was refused: the peer replied with FIN")]
    Refused { id: u32 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which end of the connection this session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Opens streams with odd ids (kubectl, client-go, the agent towards containerd).
    Client,
    /// Accepts the client's streams; its own get even ids.
    Server,
}

/// How many frames may wait for the writer, and data chunks for a stream's reader.
const QUEUE: usize = 64;
/// The largest data frame this side sends.
const MAX_DATA: usize = 64 * 1024;

/// What the reader hands a stream.
enum Inbound {
    Data(Bytes),
}

struct Entry {
    /// `None` once the peer sent FIN.
    data: Option<mpsc::Sender<Inbound>>,
    /// Waits for SYN_REPLY on streams this side opened.
    reply: Option<oneshot::Sender<Result<Headers>>>,
    state: Arc<StreamState>,
}

#[derive(Default)]
struct StreamState {
    /// Set by RST_STREAM from either side: no more writes.
    reset: AtomicBool,
}

struct Shared {
    role: Role,
    streams: Mutex<HashMap<u32, Entry>>,
    next_id: AtomicU32,
    last_peer_id: AtomicU32,
    closed: watch::Sender<bool>,
}

impl Shared {
    fn remove(&self, id: u32) {
        if let Ok(mut m) = self.streams.lock() {
            m.remove(&id);
        }
    }

    fn close(&self) {
        self.closed.send_replace(true);
        if let Ok(mut m) = self.streams.lock() {
            m.clear();
        }
    }
}

/// A handle on a session; clones share it. The session ends when the peer closes the
/// connection, or when every handle and stream is dropped.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    out: mpsc::Sender<Frame>,
}

/// Streams the peer opens, to accept or reject.
pub struct Incoming {
    rx: mpsc::Receiver<IncomingStream>,
}

impl Incoming {
    /// The next stream the peer opened; `None` once the session is over.
    pub async fn accept(&mut self) -> Option<IncomingStream> {
        self.rx.recv().await
    }
}

/// A stream the peer opened that this side has not answered yet.
pub struct IncomingStream {
    stream: Stream,
}

impl IncomingStream {
    /// The SYN_STREAM's headers.
    pub fn headers(&self) -> &Headers {
        &self.stream.headers
    }

    pub fn id(&self) -> u32 {
        self.stream.id
    }

    /// Sends SYN_REPLY (empty headers) and hands over the stream.
    pub async fn accept(self) -> Result<Stream> {
        self.stream
            .send(Frame::SynReply {
                stream_id: self.stream.id,
                fin: false,
                headers: Headers::new(),
            })
            .await?;
        Ok(self.stream)
    }

    /// Refuses the stream as spdystream does: SYN_REPLY with FIN.
    pub async fn reject(mut self) -> Result<()> {
        self.stream.write_closed = true;
        self.stream
            .send(Frame::SynReply {
                stream_id: self.stream.id,
                fin: true,
                headers: Headers::new(),
            })
            .await
    }
}

impl Session {
    /// Starts a session over `io`: a reader task and a writer task. Returns the handle and the
    /// streams the peer opens (in the server role, all of them).
    pub fn new<T>(io: T, role: Role) -> (Session, Incoming)
    where
        T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let (out_tx, out_rx) = mpsc::channel(QUEUE);
        let (in_tx, in_rx) = mpsc::channel(QUEUE);
        let (closed, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            role,
            streams: Mutex::new(HashMap::new()),
            next_id: AtomicU32::new(match role {
                Role::Client => 1,
                Role::Server => 2,
            }),
            last_peer_id: AtomicU32::new(0),
            closed,
        });
        let (read_half, write_half) = tokio::io::split(io);
        let (writer_done_tx, writer_done_rx) = oneshot::channel::<()>();
        tokio::spawn(write_loop(write_half, out_rx, writer_done_tx));
        tokio::spawn(read_loop(
            read_half,
            shared.clone(),
            out_tx.downgrade(),
            in_tx,
            writer_done_rx,
        ));
        (
            Session {
                shared,
                out: out_tx,
            },
            Incoming { rx: in_rx },
        )
    }

    /// Opens a stream with `headers` (SYN_STREAM) and waits for the peer's SYN_REPLY.
    pub async fn open(&self, headers: Headers) -> Result<Stream> {
        if *self.shared.closed.borrow() {
            return Err(Error::Closed);
        }
        let id = self.shared.next_id.fetch_add(2, Ordering::Relaxed);
        let (data_tx, data_rx) = mpsc::channel(QUEUE);
        let (reply_tx, reply_rx) = oneshot::channel();
        let state = Arc::new(StreamState::default());
        self.shared
            .streams
            .lock()
            .map_err(|_| Error::Closed)?
            .insert(
                id,
                Entry {
                    data: Some(data_tx),
                    reply: Some(reply_tx),
                    state: state.clone(),
                },
            );
        let stream = Stream::new(
            id,
            headers.clone(),
            data_rx,
            self.out.clone(),
            state,
            self.shared.clone(),
        );
        stream
            .send(Frame::SynStream {
                stream_id: id,
                associated_id: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers,
            })
            .await?;
        let mut stream = stream;
        match reply_rx.await {
            Ok(Ok(reply)) => {
                stream.reply = reply;
                Ok(stream)
            }
            Ok(Err(e)) => {
                stream.write_closed = true;
                Err(e)
            }
            Err(_) => {
                stream.write_closed = true;
                Err(Error::Closed)
            }
        }
    }

    /// Tells the peer no more streams will be accepted (GOAWAY, status OK).
    pub async fn goaway(&self) -> Result<()> {
        self.out
            .send(Frame::GoAway {
                last_good_stream_id: self.shared.last_peer_id.load(Ordering::Relaxed),
                status: 0,
            })
            .await
            .map_err(|_| Error::Closed)
    }

    /// Resolves when the connection is over (peer closed it, or a protocol error).
    pub async fn closed(&self) {
        let mut rx = self.shared.closed.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Whether the connection is over.
    pub fn is_closed(&self) -> bool {
        *self.shared.closed.borrow()
    }

    /// Which end this is.
    pub fn role(&self) -> Role {
        self.shared.role
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut io: W,
    mut rx: mpsc::Receiver<Frame>,
    done: oneshot::Sender<()>,
) {
    let mut encoder = Encoder::new();
    let mut buf = BytesMut::with_capacity(MAX_DATA + 1024);
    'outer: while let Some(frame) = rx.recv().await {
        let mut next = Some(frame);
        while let Some(f) = next.take() {
            if let Err(err) = encoder.encode(&f, &mut buf) {
                tracing::debug!(%err, "spdy: cannot encode a frame");
                break 'outer;
            }
            if buf.len() < MAX_DATA {
                next = rx.try_recv().ok();
            }
        }
        if io.write_all(&buf).await.is_err() || io.flush().await.is_err() {
            break;
        }
        buf.clear();
    }
    let _ = io.shutdown().await;
    let _ = done.send(());
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut io: R,
    shared: Arc<Shared>,
    out: mpsc::WeakSender<Frame>,
    incoming: mpsc::Sender<IncomingStream>,
    mut writer_done: oneshot::Receiver<()>,
) {
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(MAX_DATA + 1024);
    loop {
        let frame = match decoder.decode(&mut buf) {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                buf.reserve(MAX_DATA);
                tokio::select! {
                    n = io.read_buf(&mut buf) => match n {
                        Ok(0) | Err(_) => break,
                        Ok(_) => continue,
                    },
                    _ = &mut writer_done => break,
                }
            }
            Err(err) => {
                tracing::debug!(%err, "spdy: bad frame, closing the session");
                break;
            }
        };
        if handle(frame, &shared, &out, &incoming).await.is_err() {
            break;
        }
    }
    shared.close();
}

/// Acts on one frame from the peer; `Err` ends the session.
async fn handle(
    frame: Frame,
    shared: &Arc<Shared>,
    out: &mpsc::WeakSender<Frame>,
    incoming: &mpsc::Sender<IncomingStream>,
) -> Result<(), ()> {
    let send = |f: Frame| async {
        if let Some(tx) = out.upgrade() {
            let _ = tx.send(f).await;
        }
    };
    match frame {
        Frame::Data {
            stream_id,
            fin,
            data,
        } => {
            let tx = {
                let mut m = shared.streams.lock().map_err(|_| ())?;
                let Some(e) = m.get_mut(&stream_id) else {
                    return Ok(());
                };
                if fin { e.data.take() } else { e.data.clone() }
            };
            if let Some(tx) = tx
                && !data.is_empty()
            {
                let _ = tx.send(Inbound::Data(data)).await;
            }
        }
        Frame::SynStream {
            stream_id,
            fin,
            headers,
            ..
        } => {
            let peer_parity = match shared.role {
                Role::Server => 1,
                Role::Client => 0,
            };
            let exists = shared
                .streams
                .lock()
                .map_err(|_| ())?
                .contains_key(&stream_id);
            if stream_id == 0 || stream_id % 2 != peer_parity || exists {
                let status = if exists {
                    status::STREAM_IN_USE
                } else {
                    status::PROTOCOL_ERROR
                };
                send(Frame::RstStream { stream_id, status }).await;
                return Ok(());
            }
            shared.last_peer_id.fetch_max(stream_id, Ordering::Relaxed);
            let Some(out_tx) = out.upgrade() else {
                return Err(());
            };
            let (data_tx, data_rx) = mpsc::channel(QUEUE);
            let state = Arc::new(StreamState::default());
            shared.streams.lock().map_err(|_| ())?.insert(
                stream_id,
                Entry {
                    data: (!fin).then_some(data_tx),
                    reply: None,
                    state: state.clone(),
                },
            );
            let stream = Stream::new(stream_id, headers, data_rx, out_tx, state, shared.clone());
            if let Err(mpsc::error::SendError(refused)) =
                incoming.send(IncomingStream { stream }).await
            {
                let mut s = refused.stream;
                s.write_closed = true;
                send(Frame::RstStream {
                    stream_id,
                    status: status::REFUSED_STREAM,
                })
                .await;
            }
        }
        Frame::SynReply {
            stream_id,
            fin,
            headers,
        } => {
            let mut m = shared.streams.lock().map_err(|_| ())?;
            if let Some(e) = m.get_mut(&stream_id) {
                if fin {
                    e.data = None;
                }
                if let Some(reply) = e.reply.take() {
                    let _ = reply.send(Ok(headers));
                }
            }
        }
        Frame::Headers { stream_id, fin, .. } => {
            if fin && let Some(e) = shared.streams.lock().map_err(|_| ())?.get_mut(&stream_id) {
                e.data = None;
            }
        }
        Frame::RstStream { stream_id, status } => {
            let entry = shared.streams.lock().map_err(|_| ())?.remove(&stream_id);
            if let Some(mut e) = entry {
                e.state.reset.store(true, Ordering::Relaxed);
                if let Some(reply) = e.reply.take() {
                    let _ = reply.send(Err(Error::Reset {
                        id: stream_id,
                        status,
                    }));
                }
            }
        }
        Frame::Ping { id } => {
            let peer_parity = match shared.role {
                Role::Server => 1,
                Role::Client => 0,
            };
            if id % 2 == peer_parity {
                send(Frame::Ping { id }).await;
            }
        }
        Frame::GoAway { .. }
        | Frame::Settings { .. }
        | Frame::WindowUpdate { .. }
        | Frame::Unknown { .. } => {}
    }
    Ok(())
}

/// One stream: read what the peer sends (EOF after its FIN or a reset), write data frames;
/// `shutdown` sends FIN. Dropping a stream that was not shut down sends FIN too.
pub struct Stream {
    id: u32,
    headers: Headers,
    reply: Headers,
    rx: mpsc::Receiver<Inbound>,
    pending: Bytes,
    out: PollSender<Frame>,
    write_closed: bool,
    state: Arc<StreamState>,
    shared: Arc<Shared>,
}

impl Stream {
    fn new(
        id: u32,
        headers: Headers,
        rx: mpsc::Receiver<Inbound>,
        out: mpsc::Sender<Frame>,
        state: Arc<StreamState>,
        shared: Arc<Shared>,
    ) -> Stream {
        Stream {
            id,
            headers,
            reply: Headers::new(),
            rx,
            pending: Bytes::new(),
            out: PollSender::new(out),
            write_closed: false,
            state,
            shared,
        }
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The headers the stream was opened with.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// The headers of the peer's SYN_REPLY (streams this side opened).
    pub fn reply_headers(&self) -> &Headers {
        &self.reply
    }

    /// Resets the stream (RST_STREAM CANCEL): both directions end at once.
    pub async fn reset(mut self) -> Result<()> {
        self.write_closed = true;
        self.state.reset.store(true, Ordering::Relaxed);
        self.send(Frame::RstStream {
            stream_id: self.id,
            status: status::CANCEL,
        })
        .await
    }

    async fn send(&self, frame: Frame) -> Result<()> {
        let tx = self.out.get_ref().ok_or(Error::Closed)?;
        tx.send(frame).await.map_err(|_| Error::Closed)
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match ready!(self.rx.poll_recv(cx)) {
                Some(Inbound::Data(data)) => self.pending = data,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        let chunk = self.pending.split_to(n);
        buf.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

fn broken(what: &str, id: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        format!("spdy stream {id} {what}"),
    )
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let id = self.id;
        if self.write_closed {
            return Poll::Ready(Err(broken("is closed for writing", id)));
        }
        if self.state.reset.load(Ordering::Relaxed) {
            return Poll::Ready(Err(broken("was reset", id)));
        }
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if ready!(self.out.poll_reserve(cx)).is_err() {
            return Poll::Ready(Err(broken("lost its session", id)));
        }
        let n = buf.len().min(MAX_DATA);
        let frame = Frame::Data {
            stream_id: id,
            fin: false,
            data: Bytes::copy_from_slice(&buf[..n]),
        };
        if self.out.send_item(frame).is_err() {
            return Poll::Ready(Err(broken("lost its session", id)));
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write_closed || self.state.reset.load(Ordering::Relaxed) {
            self.write_closed = true;
            return Poll::Ready(Ok(()));
        }
        let id = self.id;
        if ready!(self.out.poll_reserve(cx)).is_err() {
            self.write_closed = true;
            return Poll::Ready(Ok(()));
        }
        let _ = self.out.send_item(Frame::Data {
            stream_id: id,
            fin: true,
            data: Bytes::new(),
        });
        self.write_closed = true;
        Poll::Ready(Ok(()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if !self.write_closed
            && !self.state.reset.load(Ordering::Relaxed)
            && let Some(tx) = self.out.get_ref()
        {
            let fin = Frame::Data {
                stream_id: self.id,
                fin: true,
                data: Bytes::new(),
            };
            if let Err(mpsc::error::TrySendError::Full(fin)) = tx.try_send(fin) {
                let tx = tx.clone();
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    handle.spawn(async move {
                        let _ = tx.send(fin).await;
                    });
                }
            }
        }
        self.shared.remove(self.id);
    }
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("headers", &self.headers)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    fn pair() -> ((Session, Incoming), (Session, Incoming)) {
        let (a, b) = duplex(256 * 1024);
        (Session::new(a, Role::Client), Session::new(b, Role::Server))
    }

    #[tokio::test]
    async fn client_opens_server_accepts_both_directions_with_half_close() {
        let ((client, _ci), (_server, mut si)) = pair();
        let server = tokio::spawn(async move {
            let s = si.accept().await.unwrap();
            assert_eq!(s.headers().get("streamType"), Some("data"));
            assert_eq!(s.id(), 1);
            let mut s = s.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            s.write_all(&got).await.unwrap();
            s.write_all(b"!").await.unwrap();
            s.shutdown().await.unwrap();
        });
        let mut s = client
            .open(Headers::new().with("streamType", "data"))
            .await
            .unwrap();
        s.write_all(b"hello").await.unwrap();
        s.shutdown().await.unwrap();
        let mut back = Vec::new();
        s.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hello!");
        server.await.unwrap();
        assert!(s.write_all(b"x").await.is_err(), "write after FIN");
    }

    #[tokio::test]
    async fn many_streams_and_a_large_transfer() {
        let ((client, _ci), (_server, mut si)) = pair();
        tokio::spawn(async move {
            while let Some(s) = si.accept().await {
                tokio::spawn(async move {
                    let mut s = s.accept().await.unwrap();
                    let (mut r, mut w) = tokio::io::split(&mut s);
                    tokio::io::copy(&mut r, &mut w).await.unwrap();
                    w.shutdown().await.unwrap();
                });
            }
        });
        let mut tasks = Vec::new();
        for i in 0..8u32 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let s = client
                    .open(Headers::new().with("requestID", &i.to_string()))
                    .await
                    .unwrap();
                let (mut r, mut w) = tokio::io::split(s);
                let size = 3 * 1024 * 1024 + i as usize;
                let data: Vec<u8> = (0..size).map(|j| (j * 7 + i as usize) as u8).collect();
                let expect = data.clone();
                let writer = tokio::spawn(async move {
                    w.write_all(&data).await.unwrap();
                    w.shutdown().await.unwrap();
                });
                let mut back = Vec::new();
                r.read_to_end(&mut back).await.unwrap();
                writer.await.unwrap();
                assert!(back == expect, "stream {i} came back different");
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }

    #[tokio::test]
    async fn reject_and_reset_reach_the_opener() {
        let ((client, _ci), (_server, mut si)) = pair();
        tokio::spawn(async move {
            let first = si.accept().await.unwrap();
            first.reject().await.unwrap();
            let second = si.accept().await.unwrap();
            let s = second.accept().await.unwrap();
            s.reset().await.unwrap();
        });
        // A rejected stream: the reply carries FIN, so reading ends at once.
        let mut s = client.open(Headers::new()).await.unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty());
        let mut s2 = client.open(Headers::new()).await.unwrap();
        let mut got = Vec::new();
        s2.read_to_end(&mut got).await.unwrap();
        // After a reset, writing fails (once the reset arrived).
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(s2.write_all(b"x").await.is_err());
    }

    #[tokio::test]
    async fn pings_from_the_peer_are_answered() {
        let (a, b) = duplex(64 * 1024);
        let (_server, _si) = Session::new(b, Role::Server);
        let (mut r, mut w) = tokio::io::split(a);
        let mut enc = Encoder::new();
        let mut buf = BytesMut::new();
        enc.encode(&Frame::Ping { id: 1 }, &mut buf).unwrap();
        w.write_all(&buf).await.unwrap();
        let mut dec = Decoder::new();
        let mut inbuf = BytesMut::new();
        let frame = loop {
            if let Some(f) = dec.decode(&mut inbuf).unwrap() {
                break f;
            }
            r.read_buf(&mut inbuf).await.unwrap();
        };
        assert_eq!(frame, Frame::Ping { id: 1 });
    }

    #[tokio::test]
    async fn peer_going_away_ends_streams_and_the_session() {
        let (a, b) = duplex(64 * 1024);
        let (client, _ci) = Session::new(a, Role::Client);
        let (server, mut si) = Session::new(b, Role::Server);
        let opener = tokio::spawn(async move {
            let mut s = client.open(Headers::new()).await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            client.closed().await;
            got
        });
        let s = si.accept().await.unwrap();
        let mut s = s.accept().await.unwrap();
        s.write_all(b"bye").await.unwrap();
        drop(s);
        drop(si);
        drop(server);
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), opener)
            .await
            .expect("the client sees the end")
            .unwrap();
        assert_eq!(got, b"bye");
    }

    #[tokio::test]
    async fn open_on_a_dead_connection_fails() {
        let (a, b) = duplex(1024);
        drop(b);
        let (client, _ci) = Session::new(a, Role::Client);
        client.closed().await;
        assert!(matches!(
            client.open(Headers::new()).await,
            Err(Error::Closed)
        ));
    }
}
