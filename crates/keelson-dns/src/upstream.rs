//! The node's upstream resolvers: a query outside the cluster domain is sent as it came, over
//! UDP (TCP when the client used TCP or the UDP answer was truncated), to each server in turn.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// Errors asking an upstream resolver.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no upstream name servers are configured")]
    NoServers,
    #[error("upstream name server {server}: {source}")]
    Io {
        server: SocketAddr,
        source: std::io::Error,
    },
    #[error("upstream name server {server} did not answer within {timeout:?}")]
    Timeout {
        server: SocketAddr,
        timeout: Duration,
    },
    #[error("upstream name server {server} sent a malformed answer")]
    Malformed { server: SocketAddr },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where queries outside the cluster domain go.
#[async_trait::async_trait]
pub trait Upstream: Send + Sync + 'static {
    /// Sends a wire-format query and returns the wire-format answer.
    async fn exchange(&self, query: &[u8], tcp: bool) -> Result<Vec<u8>>;
}

/// The upstream name servers of a resolv.conf, tried in order.
#[derive(Clone, Debug)]
pub struct Resolvers {
    pub servers: Vec<SocketAddr>,
    pub timeout: Duration,
}

impl Resolvers {
    /// The servers a resolv.conf names (port 53), skipping entries that are not addresses.
    pub fn from_nameservers(nameservers: &[String]) -> Resolvers {
        Resolvers {
            servers: nameservers
                .iter()
                .filter_map(|ns| ns.parse::<std::net::IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, 53))
                .collect(),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Whether a wire-format answer has the TC (truncated) bit.
fn truncated(answer: &[u8]) -> bool {
    answer.len() > 2 && answer[2] & 0x02 != 0
}

/// Whether `answer` answers `query` (same message id).
fn same_id(query: &[u8], answer: &[u8]) -> bool {
    query.len() >= 2 && answer.len() >= 12 && query[..2] == answer[..2]
}

async fn udp(server: SocketAddr, query: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let io = |source| Error::Io { server, source };
    let bind: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind).await.map_err(io)?;
    sock.connect(server).await.map_err(io)?;
    sock.send(query).await.map_err(io)?;
    let mut buf = vec![0u8; 65535];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| Error::Timeout { server, timeout })?
            .map_err(io)?;
        // Ignore stray datagrams that answer something else.
        if same_id(query, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp(server: SocketAddr, query: &[u8], timeout: Duration) -> Result<Vec<u8>> {
    let io = |source| Error::Io { server, source };
    let work = async {
        let mut s = TcpStream::connect(server).await.map_err(io)?;
        let len = u16::try_from(query.len()).map_err(|_| Error::Malformed { server })?;
        let mut msg = len.to_be_bytes().to_vec();
        msg.extend_from_slice(query);
        s.write_all(&msg).await.map_err(io)?;
        let n = s.read_u16().await.map_err(io)? as usize;
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf).await.map_err(io)?;
        Ok(buf)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| Error::Timeout { server, timeout })?
}

#[async_trait::async_trait]
impl Upstream for Resolvers {
    async fn exchange(&self, query: &[u8], use_tcp: bool) -> Result<Vec<u8>> {
        let mut last = Error::NoServers;
        for &server in &self.servers {
            let answer = if use_tcp {
                tcp(server, query, self.timeout).await
            } else {
                match udp(server, query, self.timeout).await {
                    Ok(a) if truncated(&a) => tcp(server, query, self.timeout).await,
                    other => other,
                }
            };
            match answer {
                Ok(a) if same_id(query, &a) => return Ok(a),
                Ok(_) => last = Error::Malformed { server },
                Err(e) => last = e,
            }
        }
        Err(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servers_from_resolv_conf() {
        let r = Resolvers::from_nameservers(&["10.0.0.1".into(), "bad".into(), "fd00::1".into()]);
        assert_eq!(
            r.servers,
            vec![
                "10.0.0.1:53".parse().unwrap(),
                "[fd00::1]:53".parse().unwrap()
            ]
        );
    }

    #[test]
    fn header_bits() {
        assert!(truncated(&[0, 1, 0x83, 0]));
        assert!(!truncated(&[0, 1, 0x81, 0]));
        assert!(same_id(&[1, 2, 0], &[1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
        assert!(!same_id(&[1, 2, 0], &[1, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]));
    }

    #[tokio::test]
    async fn no_servers_and_silent_server() {
        let none = Resolvers {
            servers: vec![],
            timeout: Duration::from_millis(50),
        };
        assert!(matches!(
            none.exchange(&[0; 12], false).await,
            Err(Error::NoServers)
        ));
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let r = Resolvers {
            servers: vec![silent.local_addr().unwrap()],
            timeout: Duration::from_millis(50),
        };
        let err = r.exchange(&[0; 12], false).await.unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err}");
    }
}
