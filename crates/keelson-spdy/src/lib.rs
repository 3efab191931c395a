//! SPDY/3.1 as Kubernetes streams use it (port-forward, and exec/attach towards a CRI streaming
//! server): the frame codec (`frame`), zlib-compressed name/value header blocks with SPDY/3's
//! dictionary (`headers`), and a session over any `AsyncRead + AsyncWrite` in the client or the
//! server role whose streams are duplex byte channels with half-close (`session`).

pub mod frame;
pub mod headers;
pub mod session;

pub use frame::Frame;
pub use headers::Headers;
pub use session::{Error, Incoming, IncomingStream, Result, Role, Session, Stream};
