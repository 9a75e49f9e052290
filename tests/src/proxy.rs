//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 for tests: between a client and the server it can drop a
//! response after the server processed the request, cut a request mid-body, delay, or send a request twice.
//! It understands just enough HTTP (headers, `Content-Length`) to act per request; keep-alive is kept.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What happens to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward normally.
    None,
    /// Forward, let the server answer, then close the client connection without the response.
    DropResponse,
    /// Forward the headers and half the body, then close both sides.
    CutRequest,
    /// Wait before forwarding.
    Delay(Duration),
    /// Forward twice (the second copy on its own connection, after the first answered); answer with the first.
    Duplicate,
}

/// Chooses the fault for each request (`method`, `path`).
pub type Chooser = dyn FnMut(&str, &str) -> Fault + Send;

/// A running proxy.
pub struct FaultProxy {
    /// The proxy's address (`http://{addr}` is the base URL to give clients).
    pub addr: SocketAddr,
    chooser: Arc<Mutex<Box<Chooser>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free port and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let chooser: Arc<Mutex<Box<Chooser>>> = Arc::new(Mutex::new(Box::new(|_: &str, _: &str| Fault::None)));
        let c = chooser.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, upstream, c.clone()));
            }
        });
        Ok(Self { addr, chooser, task })
    }

    /// Replaces the fault chooser.
    pub fn set(&self, chooser: impl FnMut(&str, &str) -> Fault + Send + 'static) {
        *self.chooser.lock().unwrap_or_else(|e| e.into_inner()) = Box::new(chooser);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One HTTP message: head (up to and including the blank line) and body.
struct Message {
    head: Vec<u8>,
    body: Vec<u8>,
}

async fn read_message(stream: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> std::io::Result<Option<Message>> {
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head: Vec<u8> = buf.drain(..end).collect();
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let len = text
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < len {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body: Vec<u8> = buf.drain(..len).collect();
    Ok(Some(Message { head, body }))
}

async fn exchange(upstream: &mut TcpStream, request: &Message) -> std::io::Result<Message> {
    upstream.write_all(&request.head).await?;
    upstream.write_all(&request.body).await?;
    let mut buf = Vec::new();
    read_message(upstream, &mut buf)
        .await?
        .ok_or_else(|| std::io::Error::other("upstream closed"))
}

async fn serve(mut client: TcpStream, upstream_addr: SocketAddr, chooser: Arc<Mutex<Box<Chooser>>>) {
    let Ok(mut upstream) = TcpStream::connect(upstream_addr).await else {
        return;
    };
    let mut buf = Vec::new();
    while let Ok(Some(request)) = read_message(&mut client, &mut buf).await {
        let line = String::from_utf8_lossy(&request.head)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let fault = (chooser.lock().unwrap_or_else(|e| e.into_inner()))(&method, &path);
        match fault {
            Fault::CutRequest => {
                let _ = upstream.write_all(&request.head).await;
                let _ = upstream.write_all(&request.body[..request.body.len() / 2]).await;
                return;
            }
            Fault::Delay(d) => tokio::time::sleep(d).await,
            _ => {}
        }
        let Ok(response) = exchange(&mut upstream, &request).await else {
            return;
        };
        if fault == Fault::Duplicate
            && let Ok(mut second) = TcpStream::connect(upstream_addr).await
        {
            let _ = exchange(&mut second, &request).await;
        }
        if fault == Fault::DropResponse {
            return;
        }
        if client.write_all(&response.head).await.is_err() || client.write_all(&response.body).await.is_err() {
            return;
        }
    }
}
