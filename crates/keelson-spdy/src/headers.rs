//! SPDY/3 name/value header blocks: the plain encoding (a count, then length-prefixed names and
//! values) and the zlib stream with SPDY/3's dictionary that carries them, one compressor per
//! direction per session.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Errors of encoding and decoding header blocks.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("header block: zlib: {0}")]
    Compress(String),
    #[error("header block: zlib: {0}")]
    Decompress(String),
    #[error("header block is truncated")]
    Truncated,
    #[error("header block: {0} is not utf-8")]
    NotUtf8(&'static str),
    #[error("header block is larger than {0} bytes")]
    TooLarge(usize),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most a decompressed header block may hold.
const MAX_BLOCK: usize = 1 << 20;

/// Headers of a stream in order; names compare case-insensitively and go out lowercase.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Headers {
        Headers(Vec::new())
    }

    /// Adds a header (a repeated name is sent as one name with NUL-separated values).
    pub fn with(mut self, name: &str, value: &str) -> Headers {
        self.0.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The plain (uncompressed) block: names lowercased, repeated names joined with NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut merged: Vec<(String, String)> = Vec::new();
        for (name, value) in &self.0 {
            let name = name.to_ascii_lowercase();
            match merged.iter_mut().find(|(n, _)| *n == name) {
                Some((_, v)) => {
                    v.push('\0');
                    v.push_str(value);
                }
                None => merged.push((name, value.clone())),
            }
        }
        let mut out = Vec::new();
        out.extend_from_slice(&(merged.len() as u32).to_be_bytes());
        for (name, value) in &merged {
            out.extend_from_slice(&(name.len() as u32).to_be_bytes());
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(&(value.len() as u32).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// Reads a plain block; NUL-separated values become repeated headers.
    pub fn decode(block: &[u8]) -> Result<Headers> {
        let mut rest = block;
        let count = take_u32(&mut rest)?;
        let mut headers = Vec::new();
        for _ in 0..count {
            let name = take_str(&mut rest, "a header name")?;
            let value = take_str(&mut rest, "a header value")?;
            for v in value.split('\0') {
                headers.push((name.clone(), v.to_owned()));
            }
        }
        Ok(Headers(headers))
    }
}

fn take_u32(rest: &mut &[u8]) -> Result<u32> {
    if rest.len() < 4 {
        return Err(Error::Truncated);
    }
    let (head, tail) = rest.split_at(4);
    *rest = tail;
    Ok(u32::from_be_bytes([head[0], head[1], head[2], head[3]]))
}

fn take_str(rest: &mut &[u8], what: &'static str) -> Result<String> {
    let len = take_u32(rest)? as usize;
    if rest.len() < len {
        return Err(Error::Truncated);
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    String::from_utf8(head.to_vec()).map_err(|_| Error::NotUtf8(what))
}

/// The words SPDY/3 (draft 3, section 2.6.10.1) puts first in its zlib dictionary, each
/// preceded by its length as a 32-bit big-endian number.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The raw text that ends SPDY/3's dictionary.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information",
    "204 No Content",
    "301 Moved Permanently",
    "400 Bad Request",
    "401 Unauthorized",
    "403 Forbidden",
    "404 Not Found",
    "500 Internal Server Error",
    "501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00",
    " Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,public",
    "privatemax-age=gzip,deflate,sdch",
    "charset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// SPDY/3's zlib dictionary for header blocks (1,423 bytes, Adler-32 `0xe3c6a7c2`).
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            d.extend_from_slice(&(word.len() as u32).to_be_bytes());
            d.extend_from_slice(word.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

/// The compressing side of one direction of a session.
pub struct Compressor {
    z: Compress,
    started: bool,
}

impl Default for Compressor {
    fn default() -> Self {
        Compressor::new()
    }
}

impl Compressor {
    pub fn new() -> Compressor {
        Compressor {
            z: Compress::new(Compression::best(), true),
            started: false,
        }
    }

    /// Compresses one header block, ending it with a sync flush as SPDY requires.
    pub fn compress(&mut self, headers: &Headers) -> Result<Vec<u8>> {
        if !self.started {
            self.z
                .set_dictionary(dictionary())
                .map_err(|e| Error::Compress(e.to_string()))?;
            self.started = true;
        }
        let input = headers.encode();
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            let before_in = self.z.total_in();
            let before_out = out.len();
            let status = self
                .z
                .compress_vec(&input[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| Error::Compress(e.to_string()))?;
            consumed += (self.z.total_in() - before_in) as usize;
            let room_left = out.len() < out.capacity();
            if consumed == input.len() && room_left {
                break;
            }
            if status == Status::BufError && out.len() == before_out && room_left {
                break;
            }
        }
        Ok(out)
    }
}

/// The decompressing side of one direction of a session.
pub struct Decompressor {
    z: Decompress,
}

impl Default for Decompressor {
    fn default() -> Self {
        Decompressor::new()
    }
}

impl Decompressor {
    pub fn new() -> Decompressor {
        Decompressor {
            z: Decompress::new(true),
        }
    }

    /// Decompresses one header block (the bytes of one frame's block) and decodes it.
    pub fn decompress(&mut self, block: &[u8]) -> Result<Headers> {
        let mut out: Vec<u8> = Vec::with_capacity(block.len() * 4 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            if out.len() > MAX_BLOCK {
                return Err(Error::TooLarge(MAX_BLOCK));
            }
            let before_in = self.z.total_in();
            let before_out = out.len();
            match self
                .z
                .decompress_vec(&block[consumed..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    consumed += (self.z.total_in() - before_in) as usize;
                    self.z
                        .set_dictionary(dictionary())
                        .map_err(|e| Error::Decompress(e.to_string()))?;
                    continue;
                }
                Err(e) => return Err(Error::Decompress(e.to_string())),
            }
            consumed += (self.z.total_in() - before_in) as usize;
            let progressed = out.len() > before_out;
            let room_left = out.len() < out.capacity();
            if consumed == block.len() && room_left {
                break;
            }
            if !progressed && consumed == block.len() {
                break;
            }
            if !progressed && (self.z.total_in() - before_in) == 0 && room_left {
                return Err(Error::Truncated);
            }
        }
        Headers::decode(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_is_spdy3s() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        // zlib's Adler-32, computed by hand so that the check does not lean on flate2.
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in d {
            a = (a + byte as u32) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, 0xe3c6_a7c2);
    }

    #[test]
    fn plain_block_round_trips_and_joins_repeated_names() {
        let h = Headers::new()
            .with("streamType", "data")
            .with("Port", "8080")
            .with("x", "1")
            .with("X", "2");
        let block = h.encode();
        assert_eq!(&block[..4], &[0, 0, 0, 3]);
        assert_eq!(&block[4..18], b"\0\0\0\x0astreamtype");
        let back = Headers::decode(&block).unwrap();
        assert_eq!(back.get("streamtype"), Some("data"));
        assert_eq!(back.get("PORT"), Some("8080"));
        let xs: Vec<&str> = back
            .0
            .iter()
            .filter(|(n, _)| n == "x")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(xs, ["1", "2"]);
    }

    #[test]
    fn truncated_block_is_an_error() {
        let block = Headers::new().with("port", "80").encode();
        for cut in 0..block.len() {
            assert!(Headers::decode(&block[..cut]).is_err(), "cut at {cut}");
        }
    }

    /// Two blocks compressed by CPython's zlib (C zlib) with SPDY/3's dictionary, level 9, one
    /// stream, each ended with Z_SYNC_FLUSH:
    /// `{"streamtype": "error", "port": "8080", "requestid": "0"}` then
    /// `{"streamtype": "data", "port": "8080", "requestid": "0"}`.
    const CPYTHON_BLOCKS: [&str; 2] = [CPYTHON_BLOCK_1, CPYTHON_BLOCK_2];
    const CPYTHON_BLOCK_1: &str = include_str!("testdata/block1.hex");
    const CPYTHON_BLOCK_2: &str = include_str!("testdata/block2.hex");

    fn unhex(s: &str) -> Vec<u8> {
        let s = s.trim();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn decodes_blocks_compressed_by_c_zlib() {
        let mut d = Decompressor::new();
        let first = d.decompress(&unhex(CPYTHON_BLOCKS[0])).unwrap();
        assert_eq!(
            first,
            Headers::new()
                .with("streamtype", "error")
                .with("port", "8080")
                .with("requestid", "0")
        );
        let second = d.decompress(&unhex(CPYTHON_BLOCKS[1])).unwrap();
        assert_eq!(
            second,
            Headers::new()
                .with("streamtype", "data")
                .with("port", "8080")
                .with("requestid", "0")
        );
    }

    #[test]
    fn compressed_blocks_round_trip_on_one_stream() {
        let mut c = Compressor::new();
        let mut d = Decompressor::new();
        for i in 0..50 {
            let h = Headers::new()
                .with("streamType", if i % 2 == 0 { "error" } else { "data" })
                .with("port", &format!("{}", 8000 + i))
                .with("requestID", &i.to_string())
                .with("big", &"v".repeat(i * 300));
            let block = c.compress(&h).unwrap();
            let back = d.decompress(&block).unwrap();
            assert_eq!(back.get("streamtype"), h.get("streamType"));
            assert_eq!(back.get("requestid"), Some(i.to_string().as_str()));
            assert_eq!(back.get("big").unwrap().len(), i * 300);
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut d = Decompressor::new();
        assert!(d.decompress(&[0x78, 0xbb, 1, 2, 3, 4, 5, 6, 7]).is_err());
        let mut d = Decompressor::new();
        assert!(d.decompress(&[]).is_err());
    }
}
