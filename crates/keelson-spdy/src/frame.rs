//! SPDY/3.1 frames and their wire format: control frames (SYN_STREAM, SYN_REPLY, RST_STREAM,
//! SETTINGS, PING, GOAWAY, HEADERS, WINDOW_UPDATE) and data frames, with an encoder and a
//! decoder that each own one direction's header compression.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::headers::{self, Compressor, Decompressor, Headers};

/// Errors of encoding and decoding frames.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("spdy frame: unsupported version {0} (want 3)")]
    Version(u16),
    #[error("spdy {frame} frame: length {length} is too short")]
    Short { frame: &'static str, length: usize },
    #[error("spdy frame of {0} bytes is larger than the most allowed")]
    TooLarge(usize),
    #[error("spdy {frame} frame: {source}")]
    Headers {
        frame: &'static str,
        source: headers::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The protocol version this codec speaks.
pub const VERSION: u16 = 3;
/// Flag FIN on data, SYN_STREAM, SYN_REPLY and HEADERS frames.
pub const FLAG_FIN: u8 = 0x01;
/// Flag UNIDIRECTIONAL on SYN_STREAM.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// The largest payload a frame may carry (24-bit length).
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;

/// RST_STREAM status codes.
pub mod status {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const STREAM_IN_USE: u32 = 8;
    pub const STREAM_ALREADY_CLOSED: u32 = 9;
}

/// One SETTINGS entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    /// 24 bits.
    pub id: u32,
    pub value: u32,
}

/// A frame, headers decompressed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_id: u32,
        /// 0 (highest) to 7.
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame of a type this codec does not know; SPDY says to ignore it.
    Unknown {
        kind: u16,
    },
}

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

const ID_MASK: u32 = 0x7fff_ffff;

/// Writes frames; owns the compressing side of the session's header stream.
#[derive(Default)]
pub struct Encoder {
    compressor: Compressor,
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut BytesMut) -> Result<()> {
        let header_block = |c: &mut Compressor, frame: &'static str, h: &Headers| {
            c.compress(h)
                .map_err(|source| Error::Headers { frame, source })
        };
        match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(Error::TooLarge(data.len()));
                }
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(((*fin as u32) << 24) | data.len() as u32);
                out.put_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let block = header_block(&mut self.compressor, "SYN_STREAM", headers)?;
                let flags = fin_flag(*fin)
                    | if *unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control(out, SYN_STREAM, flags, 10 + block.len())?;
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(associated_id & ID_MASK);
                out.put_u8((priority & 0x7) << 5);
                out.put_u8(0); // slot
                out.put_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let block = header_block(&mut self.compressor, "SYN_REPLY", headers)?;
                control(out, SYN_REPLY, fin_flag(*fin), 4 + block.len())?;
                out.put_u32(stream_id & ID_MASK);
                out.put_slice(&block);
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let block = header_block(&mut self.compressor, "HEADERS", headers)?;
                control(out, HEADERS, fin_flag(*fin), 4 + block.len())?;
                out.put_u32(stream_id & ID_MASK);
                out.put_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control(out, RST_STREAM, 0, 8)?;
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(*status);
            }
            Frame::Settings { clear, entries } => {
                control(out, SETTINGS, *clear as u8, 4 + 8 * entries.len())?;
                out.put_u32(entries.len() as u32);
                for e in entries {
                    out.put_u32(((e.flags as u32) << 24) | (e.id & 0x00ff_ffff));
                    out.put_u32(e.value);
                }
            }
            Frame::Ping { id } => {
                control(out, PING, 0, 4)?;
                out.put_u32(*id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control(out, GOAWAY, 0, 8)?;
                out.put_u32(last_good_stream_id & ID_MASK);
                out.put_u32(*status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control(out, WINDOW_UPDATE, 0, 8)?;
                out.put_u32(stream_id & ID_MASK);
                out.put_u32(delta & ID_MASK);
            }
            Frame::Unknown { kind } => {
                control(out, *kind, 0, 0)?;
            }
        }
        Ok(())
    }
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn control(out: &mut BytesMut, kind: u16, flags: u8, length: usize) -> Result<()> {
    if length > MAX_PAYLOAD {
        return Err(Error::TooLarge(length));
    }
    out.reserve(8 + length);
    out.put_u16(0x8000 | VERSION);
    out.put_u16(kind);
    out.put_u32(((flags as u32) << 24) | length as u32);
    Ok(())
}

/// Reads frames; owns the decompressing side of the session's header stream.
#[derive(Default)]
pub struct Decoder {
    decompressor: Decompressor,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder::default()
    }

    /// Takes one whole frame off the front of `buf`, or `None` when more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let length = (u32::from_be_bytes([0, buf[5], buf[6], buf[7]])) as usize;
        if buf.len() < 8 + length {
            buf.reserve(8 + length - buf.len());
            return Ok(None);
        }
        let first = buf.get_u32();
        let flags_len = buf.get_u32();
        let flags = (flags_len >> 24) as u8;
        let mut payload = buf.split_to(length).freeze();
        let fin = flags & FLAG_FIN != 0;
        if first & 0x8000_0000 == 0 {
            return Ok(Some(Frame::Data {
                stream_id: first & ID_MASK,
                fin,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(Error::Version(version));
        }
        let kind = (first & 0xffff) as u16;
        let need = |frame: &'static str, n: usize| {
            if length < n {
                Err(Error::Short { frame, length })
            } else {
                Ok(())
            }
        };
        let frame = match kind {
            SYN_STREAM => {
                need("SYN_STREAM", 10)?;
                let stream_id = payload.get_u32() & ID_MASK;
                let associated_id = payload.get_u32() & ID_MASK;
                let priority = payload.get_u8() >> 5;
                let _slot = payload.get_u8();
                Frame::SynStream {
                    stream_id,
                    associated_id,
                    priority,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: self.headers("SYN_STREAM", &payload)?,
                }
            }
            SYN_REPLY => {
                need("SYN_REPLY", 4)?;
                let stream_id = payload.get_u32() & ID_MASK;
                Frame::SynReply {
                    stream_id,
                    fin,
                    headers: self.headers("SYN_REPLY", &payload)?,
                }
            }
            HEADERS => {
                need("HEADERS", 4)?;
                let stream_id = payload.get_u32() & ID_MASK;
                Frame::Headers {
                    stream_id,
                    fin,
                    headers: self.headers("HEADERS", &payload)?,
                }
            }
            RST_STREAM => {
                need("RST_STREAM", 8)?;
                Frame::RstStream {
                    stream_id: payload.get_u32() & ID_MASK,
                    status: payload.get_u32(),
                }
            }
            SETTINGS => {
                need("SETTINGS", 4)?;
                let count = payload.get_u32() as usize;
                if payload.len() < count.saturating_mul(8) {
                    return Err(Error::Short {
                        frame: "SETTINGS",
                        length,
                    });
                }
                let entries = (0..count)
                    .map(|_| {
                        let head = payload.get_u32();
                        Setting {
                            flags: (head >> 24) as u8,
                            id: head & 0x00ff_ffff,
                            value: payload.get_u32(),
                        }
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & 0x01 != 0,
                    entries,
                }
            }
            PING => {
                need("PING", 4)?;
                Frame::Ping {
                    id: payload.get_u32(),
                }
            }
            GOAWAY => {
                // SPDY/2 GOAWAY frames had no status; accept 4 bytes too.
                need("GOAWAY", 4)?;
                let last_good_stream_id = payload.get_u32() & ID_MASK;
                let status = if payload.len() >= 4 {
                    payload.get_u32()
                } else {
                    0
                };
                Frame::GoAway {
                    last_good_stream_id,
                    status,
                }
            }
            WINDOW_UPDATE => {
                need("WINDOW_UPDATE", 8)?;
                Frame::WindowUpdate {
                    stream_id: payload.get_u32() & ID_MASK,
                    delta: payload.get_u32() & ID_MASK,
                }
            }
            other => Frame::Unknown { kind: other },
        };
        Ok(Some(frame))
    }

    fn headers(&mut self, frame: &'static str, block: &[u8]) -> Result<Headers> {
        self.decompressor
            .decompress(block)
            .map_err(|source| Error::Headers { frame, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames() -> Vec<Frame> {
        let h = Headers::new()
            .with("streamType", "data")
            .with("port", "80")
            .with("requestID", "7");
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_id: 0,
                priority: 7,
                fin: false,
                unidirectional: false,
                headers: h.clone(),
            },
            Frame::SynStream {
                stream_id: 3,
                associated_id: 1,
                priority: 0,
                fin: true,
                unidirectional: true,
                headers: Headers::new(),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: true,
                headers: h.clone(),
            },
            Frame::RstStream {
                stream_id: 5,
                status: status::CANCEL,
            },
            Frame::Settings {
                clear: true,
                entries: vec![Setting {
                    flags: 1,
                    id: 7,
                    value: 65536,
                }],
            },
            Frame::Ping { id: 0xdead_beef },
            Frame::GoAway {
                last_good_stream_id: 9,
                status: 0,
            },
            Frame::Headers {
                stream_id: 1,
                fin: false,
                headers: h,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1 << 20,
            },
            Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 0x7fff_ffff,
                fin: true,
                data: Bytes::new(),
            },
        ]
    }

    /// Headers come back with lowercase names.
    fn lowercase(f: &Frame) -> Frame {
        let lower = |h: &Headers| {
            Headers(
                h.0.iter()
                    .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
                    .collect(),
            )
        };
        match f.clone() {
            Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                fin,
                unidirectional,
                headers,
            } => Frame::SynStream {
                stream_id,
                associated_id,
                priority,
                fin,
                unidirectional,
                headers: lower(&headers),
            },
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => Frame::SynReply {
                stream_id,
                fin,
                headers: lower(&headers),
            },
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => Frame::Headers {
                stream_id,
                fin,
                headers: lower(&headers),
            },
            other => other,
        }
    }

    #[test]
    fn every_frame_round_trips_through_one_stream() {
        let mut enc = Encoder::new();
        let mut dec = Decoder::new();
        let mut wire = BytesMut::new();
        for f in all_frames() {
            enc.encode(&f, &mut wire).unwrap();
        }
        for f in all_frames() {
            assert_eq!(dec.decode(&mut wire).unwrap(), Some(lowercase(&f)));
        }
        assert_eq!(dec.decode(&mut wire).unwrap(), None);
        assert!(wire.is_empty());
    }

    #[test]
    fn partial_input_waits_for_more() {
        let mut enc = Encoder::new();
        let mut wire = BytesMut::new();
        for f in all_frames() {
            enc.encode(&f, &mut wire).unwrap();
        }
        let all = wire.freeze();
        let mut dec = Decoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in all.iter() {
            buf.put_u8(*byte);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, all_frames().iter().map(lowercase).collect::<Vec<_>>());
    }

    #[test]
    fn wire_layout_matches_the_draft() {
        let mut enc = Encoder::new();
        let mut wire = BytesMut::new();
        enc.encode(&Frame::Ping { id: 1 }, &mut wire).unwrap();
        assert_eq!(&wire[..], &[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1]);
        wire.clear();
        enc.encode(
            &Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::from_static(b"ab"),
            },
            &mut wire,
        )
        .unwrap();
        assert_eq!(&wire[..], &[0, 0, 0, 3, 0x01, 0, 0, 2, b'a', b'b']);
        wire.clear();
        enc.encode(
            &Frame::RstStream {
                stream_id: 1,
                status: status::REFUSED_STREAM,
            },
            &mut wire,
        )
        .unwrap();
        assert_eq!(
            &wire[..],
            &[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 3]
        );
    }

    #[test]
    fn syn_stream_header_block_decodes_with_c_zlib_bytes() {
        // A SYN_STREAM (id 1, priority 0) whose block is CPython-zlib's compression of
        // streamtype=error, port=8080, requestid=0 (see headers.rs' tests).
        let block: Vec<u8> = {
            let s = include_str!("testdata/block1.hex").trim();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut wire = BytesMut::new();
        wire.put_slice(&[0x80, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00]);
        wire.put_u8((10 + block.len()) as u8);
        wire.put_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        wire.put_slice(&block);
        let frame = Decoder::new().decode(&mut wire).unwrap().unwrap();
        let Frame::SynStream {
            stream_id, headers, ..
        } = frame
        else {
            panic!("not a SYN_STREAM: {frame:?}");
        };
        assert_eq!(stream_id, 1);
        assert_eq!(headers.get("streamType"), Some("error"));
        assert_eq!(headers.get("port"), Some("8080"));
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut dec = Decoder::new();
        let mut wire = BytesMut::from(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1][..]);
        assert!(matches!(dec.decode(&mut wire), Err(Error::Version(2))));
        let mut wire = BytesMut::from(&[0x80, 0x03, 0x00, 0x03, 0, 0, 0, 2, 0, 1][..]);
        assert!(matches!(dec.decode(&mut wire), Err(Error::Short { .. })));
        let mut wire = BytesMut::from(&[0x80, 0x03, 0x00, 0x02, 0, 0, 0, 6, 0, 0, 0, 1, 9, 9][..]);
        assert!(matches!(dec.decode(&mut wire), Err(Error::Headers { .. })));
    }
}
