//! A reader of the protobuf wire format: a message as a sequence of (field number, value)
//! with varint, 64-bit, length-delimited and 32-bit values.

use thiserror::Error;

/// Offsets count bytes from the start of the request body.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated varint at offset {0}")]
    TruncatedVarint(usize),
    #[error("varint longer than 10 bytes at offset {0}")]
    VarintTooLong(usize),
    #[error("truncated {what} at offset {offset}: {needed} bytes needed, {left} left")]
    Truncated {
        what: &'static str,
        offset: usize,
        needed: u64,
        left: usize,
    },
    #[error("unsupported wire type {wire} (groups are not used by kubernetes) at offset {offset}")]
    UnsupportedWireType { wire: u8, offset: usize },
    #[error("invalid field number 0 at offset {0}")]
    FieldZero(usize),
}

/// One value as the wire carries it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    /// The bytes and the offset of their first byte in the body.
    Bytes(&'a [u8], usize),
    Fixed32(u32),
}

impl WireValue<'_> {
    /// The wire type number of the value.
    pub fn wire_type(&self) -> u8 {
        match self {
            WireValue::Varint(_) => 0,
            WireValue::Fixed64(_) => 1,
            WireValue::Bytes(..) => 2,
            WireValue::Fixed32(_) => 5,
        }
    }
}

/// A cursor over the fields of one message.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the body.
    base: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `buf`, whose first byte is at `base` in the body.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    /// Offset in the body of the next byte to read.
    pub fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// The next varint.
    pub fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.offset();
        let mut value: u64 = 0;
        for i in 0..10 {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(WireError::TruncatedVarint(start));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(WireError::VarintTooLong(start))
    }

    /// The next 8 bytes as a little-endian 64-bit value.
    pub fn fixed64(&mut self) -> Result<u64, WireError> {
        let (b, _) = self.take("64-bit value", 8)?;
        let mut eight = [0u8; 8];
        eight.copy_from_slice(b);
        Ok(u64::from_le_bytes(eight))
    }

    fn take(&mut self, what: &'static str, n: u64) -> Result<(&'a [u8], usize), WireError> {
        let offset = self.offset();
        let left = self.buf.len() - self.pos;
        let truncated = WireError::Truncated {
            what,
            offset,
            needed: n,
            left,
        };
        let n = usize::try_from(n).map_err(|_| truncated.clone())?;
        if n > left {
            return Err(truncated);
        }
        let bytes = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok((bytes, offset))
    }

    /// The next field: its number and value, or `None` at the end of the message.
    pub fn field(&mut self) -> Result<Option<(u32, WireValue<'a>)>, WireError> {
        if self.is_empty() {
            return Ok(None);
        }
        let offset = self.offset();
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).unwrap_or(u32::MAX);
        if number == 0 {
            return Err(WireError::FieldZero(offset));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = self.varint()?;
                let (b, at) = self.take("length-delimited field", len)?;
                WireValue::Bytes(b, at)
            }
            5 => {
                let (b, _) = self.take("32-bit value", 4)?;
                let mut four = [0u8; 4];
                four.copy_from_slice(b);
                WireValue::Fixed32(u32::from_le_bytes(four))
            }
            wire => {
                return Err(WireError::UnsupportedWireType {
                    wire: wire as u8,
                    offset,
                });
            }
        };
        Ok(Some((number, value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, WireError> {
        let mut r = Reader::new(buf, 0);
        let mut out = Vec::new();
        while let Some(f) = r.field()? {
            out.push(f);
        }
        Ok(out)
    }

    #[test]
    fn reads_each_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 2, b'h', b'i', // 3: bytes "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
        ];
        let got = fields(&buf).expect("valid message");
        assert_eq!(
            got,
            vec![
                (1, WireValue::Varint(150)),
                (2, WireValue::Fixed64(1)),
                (3, WireValue::Bytes(b"hi", 14)),
                (4, WireValue::Fixed32(2)),
            ]
        );
    }

    #[test]
    fn reports_malformed_input_with_offsets() {
        let check = |buf: &[u8], want: WireError| assert_eq!(fields(buf), Err(want), "{buf:?}");
        check(&[0x08, 0x96], WireError::TruncatedVarint(1));
        check(
            &[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
            ],
            WireError::VarintTooLong(1),
        );
        check(
            &[0x1a, 5, b'a'],
            WireError::Truncated {
                what: "length-delimited field",
                offset: 2,
                needed: 5,
                left: 1,
            },
        );
        check(
            &[0x11, 1, 2],
            WireError::Truncated {
                what: "64-bit value",
                offset: 1,
                needed: 8,
                left: 2,
            },
        );
        check(
            &[0x0b],
            WireError::UnsupportedWireType { wire: 3, offset: 0 },
        );
        check(&[0x00, 0x00], WireError::FieldZero(0));
    }
}
