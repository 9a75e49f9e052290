//! A TCP proxy on 127.0.0.1 that counts the bytes clients send through it: put in front of PostgreSQL, it shows
//! whether a server talks to the database at all during a stretch of time (an idle `LISTEN` sends nothing).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running proxy.
pub struct CountingProxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    sent: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on a free port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let sent = Arc::new(AtomicU64::new(0));
        let counter = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        pipe(client, server, counter).await;
                    }
                });
            }
        });
        Ok(Self { addr, sent, task })
    }

    /// Bytes clients sent so far, over every connection.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(client: TcpStream, server: TcpStream, sent: Arc<AtomicU64>) {
    let (mut client_r, mut client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let up = async move {
        let mut buf = vec![0; 16 << 10];
        while let Ok(n) = client_r.read(&mut buf).await {
            if n == 0 || server_w.write_all(&buf[..n]).await.is_err() {
                break;
            }
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
        let _ = server_w.shutdown().await;
    };
    let down = async move {
        let _ = tokio::io::copy(&mut server_r, &mut client_w).await;
        let _ = client_w.shutdown().await;
    };
    tokio::join!(up, down);
}
