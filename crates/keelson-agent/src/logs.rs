//! Container logs in the CRI format (`<RFC3339Nano> <stdout|stderr> <P|F> <content>` per line, as
//! containerd writes them), read back with upstream's `PodLogOptions` semantics: `tailLines`,
//! `sinceSeconds`/`sinceTime`, `timestamps`, `limitBytes` and `follow`.
//!
//! Partial chunks (`P`) are joined with the chunks that continue them, so `tailLines` counts
//! the lines a user sees and `timestamps` prefixes each of those lines once, with the time of
//! its first chunk.

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

/// How often a followed log file is checked for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How much of the file is read at once.
const READ_BLOCK: usize = 64 * 1024;

/// Errors of reading logs and parsing log options.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid value {value:?} for parameter {name}: {reason}")]
    InvalidParam {
        name: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("at most one of `sinceTime` or `sinceSeconds` may be specified")]
    SinceConflict,
    #[error("cannot open log file {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
    #[error("cannot read log file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The output stream a chunk was written to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// One parsed line of a CRI log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CriLine<'a> {
    pub time: Timestamp,
    pub stream: LogStream,
    /// `P`: the line continues in the next chunk of the same stream.
    pub partial: bool,
    /// The content, without the trailing newline.
    pub content: &'a [u8],
}

/// Parses one line of a CRI log file (without its newline); `None` for a line that is not in
/// the CRI format.
pub fn parse_line(line: &[u8]) -> Option<CriLine<'_>> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let (time, rest) = split_field(line)?;
    let time: Timestamp = std::str::from_utf8(time).ok()?.parse().ok()?;
    let (stream, rest) = split_field(rest)?;
    let stream = match stream {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    // The tag field may carry more tags after a ':'; the first says partial or full. A full
    // line with empty content may lack the separating space.
    let (tags, content) = split_field(rest).unwrap_or((rest, &[]));
    let partial = match tags.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return None,
    };
    Some(CriLine {
        time,
        stream,
        partial,
        content,
    })
}

fn split_field(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = s.iter().position(|b| *b == b' ')?;
    Some((&s[..at], &s[at + 1..]))
}

/// What part of a container's log to return and how, as upstream's `PodLogOptions`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new lines until the container exits.
    pub follow: bool,
    /// Only the last this many lines (of what the file holds when the request starts).
    pub tail_lines: Option<u64>,
    /// Only lines written at or after this time.
    pub since: Option<Timestamp>,
    /// Prefix each line with its RFC3339Nano timestamp and a space.
    pub timestamps: bool,
    /// Stop after this many bytes of output.
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Reads the options from decoded query parameters (`follow`, `tailLines`, `sinceSeconds`,
    /// `sinceTime`, `timestamps`, `limitBytes`; others are ignored). `sinceSeconds` counts back
    /// from `now`.
    pub fn from_query(pairs: &[(String, String)], now: Timestamp) -> Result<LogOptions> {
        let mut opts = LogOptions::default();
        let mut since_seconds = None;
        let mut since_time = None;
        for (key, value) in pairs {
            match key.as_str() {
                "follow" => opts.follow = boolean("follow", value)?,
                "timestamps" => opts.timestamps = boolean("timestamps", value)?,
                "tailLines" => {
                    let n = integer("tailLines", value)?;
                    if n < 0 {
                        return Err(invalid(
                            "tailLines",
                            value,
                            "must be greater than or equal to 0",
                        ));
                    }
                    opts.tail_lines = Some(n as u64);
                }
                "limitBytes" => {
                    let n = integer("limitBytes", value)?;
                    if n < 1 {
                        return Err(invalid("limitBytes", value, "must be greater than 0"));
                    }
                    opts.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n = integer("sinceSeconds", value)?;
                    if n < 1 {
                        return Err(invalid("sinceSeconds", value, "must be greater than 0"));
                    }
                    since_seconds = Some(n);
                }
                "sinceTime" => {
                    let t: Timestamp = value
                        .parse()
                        .map_err(|_| invalid("sinceTime", value, "not an RFC3339 time"))?;
                    since_time = Some(t);
                }
                _ => {}
            }
        }
        opts.since = match (since_seconds, since_time) {
            (Some(_), Some(_)) => return Err(Error::SinceConflict),
            (Some(secs), None) => Some(
                now.checked_sub(jiff::SignedDuration::from_secs(secs))
                    .unwrap_or(Timestamp::MIN),
            ),
            (None, t) => t,
        };
        Ok(opts)
    }
}

fn invalid(name: &'static str, value: &str, reason: &'static str) -> Error {
    Error::InvalidParam {
        name,
        value: value.to_owned(),
        reason,
    }
}

fn boolean(name: &'static str, value: &str) -> Result<bool> {
    match value {
        "" | "true" | "1" | "t" | "T" | "True" | "TRUE" => Ok(true),
        "false" | "0" | "f" | "F" | "False" | "FALSE" => Ok(false),
        _ => Err(invalid(name, value, "not a boolean")),
    }
}

fn integer(name: &'static str, value: &str) -> Result<i64> {
    value
        .parse()
        .map_err(|_| invalid(name, value, "not an integer"))
}

/// One line as a user sees it: the joined chunks, with the time of the first.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LogLine {
    time: Timestamp,
    /// Ends with a newline unless the line was cut off (the container stopped mid-line).
    content: Vec<u8>,
}

impl LogLine {
    fn render(&self, timestamps: bool, out: &mut Vec<u8>) {
        if timestamps {
            out.extend_from_slice(format_time(self.time).as_bytes());
            out.push(b' ');
        }
        out.extend_from_slice(&self.content);
    }
}

/// A timestamp as the kubelet prints it: RFC3339 with exactly nine fractional digits.
pub fn format_time(t: Timestamp) -> String {
    jiff::fmt::temporal::DateTimePrinter::new()
        .precision(Some(9))
        .timestamp_to_string(&t)
}

/// One full line of a CRI log file as containerd writes it, newline included (for fakes and
/// tests that stand in for a runtime).
pub fn cri_line(time: std::time::SystemTime, stream: LogStream, content: &str) -> String {
    let time = Timestamp::try_from(time).unwrap_or(Timestamp::UNIX_EPOCH);
    let stream = match stream {
        LogStream::Stdout => "stdout",
        LogStream::Stderr => "stderr",
    };
    format!("{} {stream} F {content}\n", format_time(time))
}

/// Turns raw file bytes into log lines: splits at newlines, skips lines that do not parse,
/// joins partial chunks per stream.
#[derive(Default)]
struct Decoder {
    /// Bytes after the last newline seen (a line still being written).
    carry: Vec<u8>,
    /// A partial line per stream (stdout, stderr).
    pending: [Option<LogLine>; 2],
}

impl Decoder {
    fn feed(&mut self, data: &[u8], out: &mut Vec<LogLine>) {
        let mut rest = data;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(at + 1);
            if self.carry.is_empty() {
                self.line(line, out);
            } else {
                let mut joined = std::mem::take(&mut self.carry);
                joined.extend_from_slice(line);
                self.line(&joined, out);
            }
            rest = tail;
        }
        self.carry.extend_from_slice(rest);
    }

    /// The file is complete: an unterminated last line and partial lines are given out as
    /// they are.
    fn finish(&mut self, out: &mut Vec<LogLine>) {
        let carry = std::mem::take(&mut self.carry);
        if !carry.is_empty() {
            self.line(&carry, out);
        }
        let mut rest: Vec<LogLine> = self.pending.iter_mut().filter_map(Option::take).collect();
        rest.sort_by_key(|l| l.time);
        out.extend(rest);
    }

    fn line(&mut self, raw: &[u8], out: &mut Vec<LogLine>) {
        let Some(chunk) = parse_line(raw) else {
            return;
        };
        let slot = &mut self.pending[chunk.stream as usize];
        let line = slot.get_or_insert_with(|| LogLine {
            time: chunk.time,
            content: Vec::new(),
        });
        line.content.extend_from_slice(chunk.content);
        if !chunk.partial {
            line.content.push(b'\n');
            if let Some(done) = slot.take() {
                out.push(done);
            }
        }
    }
}

/// Where rendered output goes: counts bytes against `limitBytes`, notices a departed client.
struct Sink {
    tx: mpsc::Sender<Result<Bytes>>,
    remaining: Option<u64>,
}

impl Sink {
    /// Sends a chunk; `false` when nothing more should be sent (limit reached, client gone).
    async fn send(&mut self, mut bytes: Vec<u8>) -> bool {
        if let Some(left) = self.remaining {
            if bytes.len() as u64 >= left {
                bytes.truncate(left as usize);
                self.remaining = Some(0);
            } else {
                self.remaining = Some(left - bytes.len() as u64);
            }
        }
        if !bytes.is_empty() && self.tx.send(Ok(Bytes::from(bytes))).await.is_err() {
            return false;
        }
        self.remaining != Some(0)
    }
}

/// Streams the log file at `path` with `opts`. `running` says whether the container still
/// runs (a dropped sender counts as exited): when following, the stream ends once it is
/// `false` and the file is drained, or when the consumer drops the stream.
///
/// The file is opened before this returns, so a missing file is an error here rather than
/// in the stream.
pub async fn stream(
    path: &Path,
    opts: LogOptions,
    running: watch::Receiver<bool>,
) -> Result<ReceiverStream<Result<Bytes>>> {
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|source| Error::Open {
            path: path.to_path_buf(),
            source,
        })?;
    let (tx, rx) = mpsc::channel(16);
    let reader = Reader {
        path: path.to_path_buf(),
        file,
        offset: 0,
        buf: vec![0; READ_BLOCK],
    };
    tokio::spawn(async move {
        let sink = Sink {
            tx: tx.clone(),
            remaining: opts.limit_bytes,
        };
        if let Err(e) = run(reader, opts, running, sink).await {
            let _ = tx.send(Err(e)).await;
        }
    });
    Ok(ReceiverStream::new(rx))
}

struct Reader {
    path: PathBuf,
    file: tokio::fs::File,
    offset: u64,
    buf: Vec<u8>,
}

impl Reader {
    /// The next bytes of the file, empty at its current end. A file that shrank (truncated
    /// by a rotation) is read again from its start.
    async fn read(&mut self) -> Result<&[u8]> {
        let len = self
            .file
            .metadata()
            .await
            .map_err(|source| Error::Read {
                path: self.path.clone(),
                source,
            })?
            .len();
        if len < self.offset {
            self.offset = 0;
            self.file
                .seek(io::SeekFrom::Start(0))
                .await
                .map_err(|source| Error::Read {
                    path: self.path.clone(),
                    source,
                })?;
        }
        let n = self
            .file
            .read(&mut self.buf)
            .await
            .map_err(|source| Error::Read {
                path: self.path.clone(),
                source,
            })?;
        self.offset += n as u64;
        Ok(&self.buf[..n])
    }
}

async fn run(
    mut reader: Reader,
    opts: LogOptions,
    mut running: watch::Receiver<bool>,
    mut sink: Sink,
) -> Result<()> {
    let mut decoder = Decoder::default();
    let mut lines = Vec::new();
    let keep = |l: &LogLine| opts.since.is_none_or(|since| l.time >= since);
    // Whether the container had exited before the last read: then an empty read means done.
    let mut exited = !*running.borrow();
    // What the file holds now, with tailLines applied.
    let mut tail: VecDeque<LogLine> = VecDeque::new();
    loop {
        let data = reader.read().await?;
        if data.is_empty() {
            break;
        }
        decoder.feed(data, &mut lines);
        if let Some(n) = opts.tail_lines {
            tail.extend(lines.drain(..).filter(keep));
            while tail.len() as u64 > n {
                tail.pop_front();
            }
        } else if !emit(&mut sink, &mut lines, &opts).await {
            return Ok(());
        }
    }
    if exited || !opts.follow {
        decoder.finish(&mut lines);
    }
    if opts.tail_lines.is_some() {
        let mut all: Vec<LogLine> = tail.into();
        all.extend(lines.drain(..).filter(keep));
        let skip = all
            .len()
            .saturating_sub(opts.tail_lines.unwrap_or(0) as usize);
        lines = all.split_off(skip);
    }
    if !emit(&mut sink, &mut lines, &opts).await || !opts.follow || exited {
        return Ok(());
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            changed = running.changed(), if !exited => {
                if changed.is_err() {
                    exited = true;
                }
            }
            _ = sink.tx.closed() => return Ok(()),
        }
        exited = exited || !*running.borrow();
        loop {
            let data = reader.read().await?;
            if data.is_empty() {
                break;
            }
            decoder.feed(data, &mut lines);
            if !emit(&mut sink, &mut lines, &opts).await {
                return Ok(());
            }
        }
        if exited {
            decoder.finish(&mut lines);
            emit(&mut sink, &mut lines, &opts).await;
            return Ok(());
        }
    }
}

/// Renders and sends `lines` (emptying it); `false` when output should stop.
async fn emit(sink: &mut Sink, lines: &mut Vec<LogLine>, opts: &LogOptions) -> bool {
    let mut out = Vec::new();
    for line in lines.drain(..) {
        if opts.since.is_none_or(|since| line.time >= since) {
            line.render(opts.timestamps, &mut out);
        }
    }
    sink.send(out).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    const LOG: &str = "\
2024-05-01T10:00:00.000000001Z stdout F one
garbage that is not a cri line
2024-05-01T10:00:01.5Z stderr F two
2024-05-01T10:00:02Z stdout P thr
2024-05-01T10:00:02.1Z stdout P e
2024-05-01T10:00:02.2Z stdout F e
2024-05-01T10:00:03Z stdout F 
2024-05-01T10:00:04+02:00 stdout F four
2024-05-01T10:00:05Z stdout F five
";

    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    fn now() -> Timestamp {
        "2024-05-01T10:00:10Z".parse().unwrap()
    }

    async fn collect(path: &Path, opts: LogOptions, running: watch::Receiver<bool>) -> String {
        let mut s = stream(path, opts, running).await.unwrap();
        let mut out = Vec::new();
        while let Some(chunk) = s.next().await {
            out.extend_from_slice(&chunk.unwrap());
        }
        String::from_utf8(out).unwrap()
    }

    /// Serves LOG with the options of `query` (not following) and compares the output.
    #[track_caller]
    fn check(query: &str, want: &str) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, LOG).unwrap();
        let opts = LogOptions::from_query(&pairs(query), now()).unwrap();
        let (_tx, rx) = watch::channel(true);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(collect(&path, opts, rx));
        assert_eq!(got, want, "query {query:?}");
    }

    #[test]
    fn options() {
        check("", "one\ntwo\nthree\n\nfour\nfive\n");
        check("tailLines=2", "four\nfive\n");
        check("tailLines=5", "two\nthree\n\nfour\nfive\n");
        check("tailLines=0", "");
        check("tailLines=100", "one\ntwo\nthree\n\nfour\nfive\n");
        // 10:00:04+02:00 is 08:00:04Z: before the cut.
        check("sinceTime=2024-05-01T10:00:02Z", "three\n\nfive\n");
        check("sinceSeconds=7", "\nfive\n");
        check("sinceSeconds=7&tailLines=1", "five\n");
        check(
            "timestamps=true&tailLines=4",
            "2024-05-01T10:00:02.000000000Z three\n\
             2024-05-01T10:00:03.000000000Z \n\
             2024-05-01T08:00:04.000000000Z four\n\
             2024-05-01T10:00:05.000000000Z five\n",
        );
        check(
            "timestamps=1&limitBytes=40",
            "2024-05-01T10:00:00.000000001Z one\n2024-",
        );
        check("limitBytes=6", "one\ntw");
        check("limitBytes=6&tailLines=1", "five\n");
    }

    #[test]
    fn bad_options() {
        for (query, want) in [
            (
                "tailLines=-1",
                "invalid value \"-1\" for parameter tailLines: must be greater than or equal to 0",
            ),
            (
                "limitBytes=0",
                "invalid value \"0\" for parameter limitBytes: must be greater than 0",
            ),
            (
                "sinceSeconds=x",
                "invalid value \"x\" for parameter sinceSeconds: not an integer",
            ),
            (
                "sinceSeconds=1&sinceTime=2024-05-01T10:00:02Z",
                "at most one of `sinceTime` or `sinceSeconds` may be specified",
            ),
            (
                "follow=maybe",
                "invalid value \"maybe\" for parameter follow: not a boolean",
            ),
        ] {
            let err = LogOptions::from_query(&pairs(query), now()).unwrap_err();
            assert_eq!(err.to_string(), want, "query {query:?}");
        }
    }

    #[test]
    fn parse_lines() {
        let l = parse_line(b"2024-05-01T10:00:00Z stderr P:extra some text \n").unwrap();
        assert_eq!(l.stream, LogStream::Stderr);
        assert!(l.partial);
        assert_eq!(l.content, b"some text ");
        assert_eq!(
            parse_line(b"2024-05-01T10:00:00Z stdout F")
                .unwrap()
                .content,
            b""
        );
        for bad in [
            &b""[..],
            b"not a time stdout F x",
            b"2024-05-01T10:00:00Z stdin F x",
            b"2024-05-01T10:00:00Z stdout X x",
        ] {
            assert_eq!(parse_line(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn cri_lines_round_trip() {
        let at = std::time::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_000_000);
        let line = cri_line(at, LogStream::Stderr, "hi there");
        assert_eq!(line, "2023-11-14T22:13:20.123000000Z stderr F hi there\n");
        let parsed = parse_line(line.as_bytes()).unwrap();
        assert_eq!(
            (parsed.stream, parsed.partial, parsed.content),
            (LogStream::Stderr, false, &b"hi there"[..])
        );
    }

    #[tokio::test]
    async fn missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope.log");
        let (_tx, rx) = watch::channel(true);
        let err = stream(&path, LogOptions::default(), rx).await.unwrap_err();
        assert!(
            err.to_string().starts_with("cannot open log file "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn follow_sees_appended_lines_and_ends_when_the_container_exits() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-05-01T10:00:00Z stdout F first\n").unwrap();
        let (running, rx) = watch::channel(true);
        let opts = LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..LogOptions::default()
        };
        let mut s = stream(&path, opts, rx).await.unwrap();
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"first\n");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b"2024-05-01T10:00:01Z stdout P sec")
            .unwrap();
        file.flush().unwrap();
        // The partial half is held back until its line is complete.
        let early = tokio::time::timeout(FOLLOW_POLL * 3, s.next()).await;
        assert!(early.is_err(), "got {early:?}");
        file.write_all(b"\n2024-05-01T10:00:01Z stdout F ond\n")
            .unwrap();
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"second\n");
        file.write_all(b"2024-05-01T10:00:02Z stdout F last\n")
            .unwrap();
        running.send(false).unwrap();
        let mut rest = Vec::new();
        while let Some(chunk) = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("stream ends after the container exited")
        {
            rest.extend_from_slice(&chunk.unwrap());
        }
        assert_eq!(rest, b"last\n");
    }

    #[tokio::test]
    async fn follow_of_an_exited_container_returns_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        std::fs::write(&path, "2024-05-01T10:00:00Z stdout P cut off\n").unwrap();
        let (_running, rx) = watch::channel(false);
        let opts = LogOptions {
            follow: true,
            ..LogOptions::default()
        };
        let got = tokio::time::timeout(Duration::from_secs(5), collect(&path, opts, rx))
            .await
            .unwrap();
        assert_eq!(got, "cut off");
    }
}
