//! A TCP proxy on 127.0.0.1 in front of PostgreSQL that counts what clients send through it: the bytes (does a
//! server talk to the database at all during a stretch of time? an idle `LISTEN` sends nothing) and the round
//! trips (how many answers a request waits for).
//!
//! A round trip is a frontend message that makes PostgreSQL answer with `ReadyForQuery`: a simple `Query` ('Q')
//! or an extended-protocol `Sync` ('S'). Statements pipelined behind one another still count one each: through
//! the local Hyperdrive proxy of `wrangler dev` every answer is flushed on its own, so a pipeline of n
//! statements costs n waits. The connection's start-up (SSL request, start-up message, password) is not counted.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
pub struct CountingProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    counts: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    bytes: AtomicU64,
    round_trips: AtomicU64,
}

impl CountingProxy {
    /// Listens on a free port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counts = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        pipe(client, server, counts).await;
                    }
                });
            }
        });
        Ok(Self { addr, counts, task })
    }

    /// Bytes clients sent so far, over every connection.
    pub fn sent(&self) -> u64 {
        self.counts.bytes.load(Ordering::Relaxed)
    }

    /// Round trips (`Query` and `Sync` messages) clients sent so far, over every connection.
    pub fn round_trips(&self) -> u64 {
        self.counts.round_trips.load(Ordering::Relaxed)
    }

    /// `db_url` with its host and port replaced by the proxy's.
    pub fn url_for(&self, db_url: &str) -> String {
        let cfg: tokio_postgres::Config = db_url.parse().expect("database URL");
        let port = cfg.get_ports()[0];
        db_url.replace(&format!("127.0.0.1:{port}"), &self.addr.to_string())
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Splits a client's byte stream into frontend messages and counts the round trips among them.
#[derive(Default)]
struct Frontend {
    /// Still in start-up: messages have no type byte (SSL/GSS request, start-up message).
    started: bool,
    buf: Vec<u8>,
}

/// The start-up message's protocol version 3.0; SSL and GSS encryption requests use other codes and are followed
/// by another untyped message.
const PROTOCOL_3: u32 = 196_608;

impl Frontend {
    /// Feeds `bytes`, returns the round trips completed in them.
    fn feed(&mut self, bytes: &[u8]) -> u64 {
        self.buf.extend_from_slice(bytes);
        let mut trips = 0;
        let mut at = 0;
        loop {
            let rest = &self.buf[at..];
            let (header, len_at) = if self.started { (5, 1) } else { (8, 0) };
            if rest.len() < header {
                break;
            }
            let len = u32::from_be_bytes(rest[len_at..len_at + 4].try_into().expect("4 bytes")) as usize;
            let total = len_at + len;
            if rest.len() < total {
                break;
            }
            if self.started {
                trips += u64::from(matches!(rest[0], b'Q' | b'S'));
            } else if u32::from_be_bytes(rest[4..8].try_into().expect("4 bytes")) == PROTOCOL_3 {
                self.started = true;
            }
            at += total;
        }
        self.buf.drain(..at);
        trips
    }
}

async fn pipe(client: TcpStream, server: TcpStream, counts: Arc<Counts>) {
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let up = async move {
        let mut buf = vec![0; 16 << 10];
        let mut frontend = Frontend::default();
        while let Ok(n) = client_r.read(&mut buf).await {
            if n == 0 || server_w.write_all(&buf[..n]).await.is_err() {
                break;
            }
            counts.bytes.fetch_add(n as u64, Ordering::Relaxed);
            counts
                .round_trips
                .fetch_add(frontend.feed(&buf[..n]), Ordering::Relaxed);
        }
        let _ = server_w.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
        let _ = client_w.shutdown().await;
    };
    tokio::join!(up, down);
}

#[cfg(test)]
mod tests {
    use super::Frontend;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn untyped(code: u32, body: &[u8]) -> Vec<u8> {
        let mut m = (body.len() as u32 + 8).to_be_bytes().to_vec();
        m.extend_from_slice(&code.to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn queries_and_syncs_count_across_any_split_and_start_up_does_not() {
        let mut stream = untyped(80_877_103, b""); // SSLRequest, answered 'N'
        stream.extend(untyped(super::PROTOCOL_3, b"user\0u\0\0"));
        stream.extend(msg(b'p', b"secret\0"));
        // A pipeline of two extended-protocol statements, then a simple query: three round trips. A 'S' or 'Q'
        // byte inside a message body is not a message.
        for _ in 0..2 {
            stream.extend(msg(b'P', b"\0SELECT 'S'\0\0\0"));
            stream.extend(msg(b'B', b"\0\0\0\0\0\0\0\0"));
            stream.extend(msg(b'E', b"\0\0\0\0\0"));
            stream.extend(msg(b'S', b""));
        }
        stream.extend(msg(b'Q', b"COMMIT\0"));
        stream.extend(msg(b'X', b""));
        for chunk in [1, 3, 7, stream.len()] {
            let mut f = Frontend::default();
            let trips: u64 = stream.chunks(chunk).map(|c| f.feed(c)).sum();
            assert_eq!(trips, 3, "fed in chunks of {chunk}");
        }
    }
}
