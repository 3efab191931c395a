//! The DNS server: hickory-server's UDP and TCP listeners with a handler that answers the
//! cluster domain from the cache ([`crate::lookup`]) and forwards everything else upstream.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, Metadata, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use tokio::net::{TcpListener, UdpSocket};

use crate::cache::Shared;
use crate::lookup::{self, Answer, Outcome, Zone};
use crate::upstream::Upstream;

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("listening for DNS on {proto} {addr}: {source}")]
    Bind {
        proto: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How many CNAMEs of ExternalName Services are followed for one answer.
const MAX_CNAMES: usize = 8;

/// Answers queries: the cluster domain from the cache, the rest from upstream.
pub struct Handler {
    pub cache: Shared,
    pub zone: Zone,
    pub upstream: Arc<dyn Upstream>,
}

/// A response as plain records, before it is written.
struct Reply {
    metadata: Metadata,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    soa: Vec<Record>,
    additionals: Vec<Record>,
    edns: Option<Edns>,
}

impl Handler {
    fn local(&self, name: &Name, qtype: RecordType) -> Outcome {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        lookup::lookup(&cache, &self.zone, name, qtype)
    }

    /// Asks upstream for `name`/`qtype`; the parsed answer.
    async fn ask_upstream(&self, name: &Name, qtype: RecordType) -> Option<Message> {
        let mut q = Message::query();
        q.metadata.id = rand_id();
        q.metadata.recursion_desired = true;
        q.add_query(Query::query(name.clone(), qtype));
        let bytes = q.to_vec().ok()?;
        let answer = self.upstream.exchange(&bytes, false).await.ok()?;
        Message::from_vec(&answer).ok()
    }

    /// The answer of the cluster domain, with the targets of ExternalName CNAMEs resolved
    /// (locally when they are in the cluster domain, upstream otherwise).
    async fn answer(&self, qtype: RecordType, first: Answer) -> Answer {
        let mut answer = first;
        if qtype == RecordType::CNAME {
            return answer;
        }
        for _ in 0..MAX_CNAMES {
            let Some(target) = answer.cname_target().cloned() else {
                break;
            };
            match self.local(&target, qtype) {
                Outcome::Answer(next) => {
                    answer.answers.extend(next.answers);
                    answer.additionals.extend(next.additionals);
                    if next.code != ResponseCode::NoError {
                        answer.code = next.code;
                    }
                }
                Outcome::Forward => {
                    if let Some(m) = self.ask_upstream(&target, qtype).await {
                        answer.answers.extend(m.answers);
                    }
                    break;
                }
            }
        }
        answer
    }

    async fn reply(&self, request: &Request) -> Reply {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e
        });
        let empty = |metadata: Metadata| Reply {
            metadata,
            answers: Vec::new(),
            authorities: Vec::new(),
            soa: Vec::new(),
            additionals: Vec::new(),
            edns: edns.clone(),
        };
        if request.metadata.op_code != OpCode::Query {
            metadata.response_code = ResponseCode::NotImp;
            return empty(metadata);
        }
        let Ok(info) = request.request_info() else {
            metadata.response_code = ResponseCode::FormErr;
            return empty(metadata);
        };
        let name: Name = info.query.name().into();
        let qtype = info.query.query_type();
        match self.local(&name, qtype) {
            Outcome::Forward => {
                let tcp = request.protocol() == Protocol::Tcp;
                let upstream = self.upstream.exchange(request.as_slice(), tcp).await;
                match upstream.map(|a| Message::from_vec(&a)) {
                    Ok(Ok(m)) => {
                        let mut metadata = m.metadata;
                        metadata.id = request.metadata.id;
                        Reply {
                            metadata,
                            answers: m.answers,
                            authorities: m.authorities,
                            soa: Vec::new(),
                            additionals: m.additionals,
                            edns: m.edns.or(edns),
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::debug!(name = %name, error = %e, "malformed upstream answer");
                        metadata.response_code = ResponseCode::ServFail;
                        empty(metadata)
                    }
                    Err(e) => {
                        tracing::debug!(name = %name, error = %e, "forwarding");
                        metadata.response_code = ResponseCode::ServFail;
                        metadata.recursion_available = true;
                        empty(metadata)
                    }
                }
            }
            Outcome::Answer(first) => {
                let a = self.answer(qtype, first).await;
                metadata.authoritative = true;
                metadata.recursion_available = true;
                metadata.response_code = a.code;
                Reply {
                    metadata,
                    soa: if a.answers.is_empty() {
                        vec![self.zone.soa()]
                    } else {
                        Vec::new()
                    },
                    answers: a.answers,
                    authorities: Vec::new(),
                    additionals: a.additionals,
                    edns,
                }
            }
        }
    }
}

fn rand_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() as u16
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        let reply = self.reply(request).await;
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(e) = &reply.edns {
            builder.edns(e);
        }
        let metadata = reply.metadata;
        let built = builder.build(
            metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            reply.soa.iter(),
            reply.additionals.iter(),
        );
        match response.send_response(built).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending a DNS response");
                let mut m = metadata;
                m.message_type = MessageType::Response;
                m.response_code = ResponseCode::ServFail;
                hickory_proto::op::Header {
                    metadata: m,
                    counts: Default::default(),
                }
                .into()
            }
        }
    }
}

/// A running DNS server; dropping it stops it.
pub struct Running {
    /// The UDP and TCP address it answers on.
    pub addr: SocketAddr,
    server: Server<Handler>,
}

impl Running {
    /// Stops the server.
    pub async fn shutdown(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }

    /// Waits until the server stops.
    pub async fn wait(mut self) {
        let _ = self.server.block_until_done().await;
    }
}

/// Starts answering on UDP and TCP `addr` (port 0: a free port, the same for both).
pub async fn serve(addr: SocketAddr, handler: Handler) -> Result<Running> {
    let (udp, tcp) = bind(addr).await?;
    let addr = udp.local_addr().map_err(|source| Error::Bind {
        proto: "UDP",
        addr,
        source,
    })?;
    let mut server = Server::new(handler);
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(10), 32);
    Ok(Running { addr, server })
}

async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    let mut tries = 0;
    loop {
        let udp = UdpSocket::bind(addr).await.map_err(|source| Error::Bind {
            proto: "UDP",
            addr,
            source,
        })?;
        let port = udp.local_addr().map(|a| a.port()).unwrap_or(addr.port());
        let tcp_addr = SocketAddr::new(addr.ip(), port);
        match TcpListener::bind(tcp_addr).await {
            Ok(tcp) => return Ok((udp, tcp)),
            // A free UDP port whose TCP twin is taken: pick another.
            Err(_) if addr.port() == 0 && tries < 10 => tries += 1,
            Err(source) => {
                return Err(Error::Bind {
                    proto: "TCP",
                    addr: tcp_addr,
                    source,
                });
            }
        }
    }
}
