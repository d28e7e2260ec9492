//! A TCP proxy on loopback in front of moto that a test can cut and restore,
//! so the daemon sees the emulator become unreachable (connections reset,
//! then refused) and come back, while moto itself keeps every bit of state.
//!
//! It forwards bytes and knows nothing of HTTP: every answer still comes
//! from moto. [`MotoServer::pause`](super::MotoServer::pause) is the other
//! tool: a frozen server accepts connections and never answers, so clients
//! hang until their own timeouts (30 s per attempt in reflex) instead of
//! failing fast.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// What the proxy does to new connections besides forwarding them: a
/// deterministic share of them, by connection number, is refused (closed
/// at once, before a byte is forwarded) or stalled (the request reaches
/// moto, the reply is thrown away, and the connection stays open until the
/// client gives up). `stall_needle`: additionally stall the first
/// connection whose request contains these bytes (e.g. an operation name).
#[derive(Debug, Default)]
pub struct Faults {
    /// Percent of new connections refused (0-100).
    pub refuse_percent: u64,
    /// Percent of new connections whose replies are black-holed.
    pub stall_percent: u64,
    pub stall_needle: Option<Vec<u8>>,
}

/// What happened to the connections, for the test's report.
#[derive(Debug, Default)]
pub struct FaultCounts {
    pub connections: AtomicU64,
    pub refused: AtomicU64,
    pub stalled: AtomicU64,
    /// Stalled because the request held the needle.
    pub stalled_by_needle: AtomicU64,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Forward,
    Refuse,
    Stall,
}

/// Connection `n`'s fate: spread over each hundred connections so the
/// shares hold over any stretch, not just in the long run.
fn fate(n: u64, faults: &Faults) -> Fate {
    // A stride coprime with 100 visits every slot of a hundred once.
    let slot = (n * 37) % 100;
    if slot < faults.refuse_percent {
        Fate::Refuse
    } else if slot < faults.refuse_percent + faults.stall_percent {
        Fate::Stall
    } else {
        Fate::Forward
    }
}

/// Connections the proxy is carrying, so a cut can reset them.
type Connections = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// The proxy. Spawns tasks on the current tokio runtime: use it from a
/// multi-threaded test runtime so it forwards while the test blocks.
pub struct FaultProxy {
    port: u16,
    upstream: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    connections: Connections,
    faults: Arc<Mutex<Faults>>,
    pub counts: Arc<FaultCounts>,
}

impl FaultProxy {
    /// Starts forwarding `127.0.0.1:<free port>` to `127.0.0.1:upstream_port`.
    pub async fn start(upstream_port: u16) -> FaultProxy {
        let listener = bind(0).await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let proxy = FaultProxy {
            port,
            upstream: SocketAddr::from((Ipv4Addr::LOCALHOST, upstream_port)),
            accept: Mutex::new(None),
            connections: Arc::default(),
            faults: Arc::default(),
            counts: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    /// `http://127.0.0.1:<proxy port>`, for the daemon's `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn is_up(&self) -> bool {
        self.accept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Makes the emulator unreachable: closes the listening socket (new
    /// connections are refused) and drops every open connection (requests
    /// in flight fail mid-way). Returns once both are done.
    pub async fn cut(&self) {
        let accept = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = accept {
            task.abort();
            let _ = task.await;
        }
        let open: Vec<JoinHandle<()>> =
            std::mem::take(&mut *self.connections.lock().unwrap_or_else(|e| e.into_inner()));
        for task in open {
            task.abort();
            let _ = task.await;
        }
    }

    /// From now on, new connections meet `faults`.
    pub fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    /// Listens again on the same port.
    pub async fn restore(&self) {
        if self.is_up() {
            return;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let listener = loop {
            match bind(self.port).await {
                Ok(l) => break l,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    eprintln!("proxy: rebinding port {} failed ({e}); retrying", self.port);
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("proxy cannot listen on port {} again: {e}", self.port),
            }
        };
        self.serve(listener);
    }

    fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let connections = Arc::clone(&self.connections);
        let faults = Arc::clone(&self.faults);
        let counts = Arc::clone(&self.counts);
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let n = counts.connections.fetch_add(1, Ordering::Relaxed);
                let (fate, needle) = {
                    let f = faults.lock().unwrap_or_else(|e| e.into_inner());
                    (fate(n, &f), f.stall_needle.clone())
                };
                if fate == Fate::Refuse {
                    counts.refused.fetch_add(1, Ordering::Relaxed);
                    drop(client);
                    continue;
                }
                let counts = Arc::clone(&counts);
                let faults = Arc::clone(&faults);
                let conn = tokio::spawn(async move {
                    // moto unreachable behind a reachable proxy: close.
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    if fate == Fate::Stall {
                        counts.stalled.fetch_add(1, Ordering::Relaxed);
                        black_hole(client, server).await;
                    } else if let Some(needle) = needle {
                        forward_watching(client, server, &needle, &faults, &counts).await;
                    } else {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                let mut open = connections.lock().unwrap_or_else(|e| e.into_inner());
                open.retain(|t| !t.is_finished());
                open.push(conn);
            }
        });
        *self.accept.lock().unwrap_or_else(|e| e.into_inner()) = Some(task);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(task) = self.accept.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
        for task in self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// Forwards the client's bytes to moto and throws its replies away: the
/// request is carried out, the client never hears. Returns when the client
/// gives up and closes.
async fn black_hole(client: TcpStream, server: TcpStream) {
    let (mut client_read, _client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let drain = tokio::spawn(async move {
        let mut sink = [0u8; 8192];
        while matches!(server_read.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    drain.abort();
}

/// Forwards both ways until a request carries `needle` (once per
/// [`Faults::stall_needle`]); from then on moto's replies on this
/// connection are thrown away.
async fn forward_watching(
    client: TcpStream,
    server: TcpStream,
    needle: &[u8],
    faults: &Mutex<Faults>,
    counts: &FaultCounts,
) {
    let (mut client_read, client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    // Shared, so that when moto closes its side after a black-holed reply
    // (it answers `Connection: close`) the client's side stays open: the
    // client must hear nothing at all, not an early EOF.
    let client_write = Arc::new(tokio::sync::Mutex::new(client_write));
    let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let replies = {
        let stalled = Arc::clone(&stalled);
        let client_write = Arc::clone(&client_write);
        tokio::spawn(async move {
            let mut buf = [0u8; 8192];
            loop {
                let n = match server_read.read(&mut buf).await {
                    Ok(n) if n > 0 => n,
                    _ => break,
                };
                if stalled.load(Ordering::Relaxed) {
                    continue;
                }
                if client_write
                    .lock()
                    .await
                    .write_all(&buf[..n])
                    .await
                    .is_err()
                {
                    return;
                }
            }
            // moto closed: pass the close on, unless the reply was black-holed.
            if !stalled.load(Ordering::Relaxed) {
                let _ = client_write.lock().await.shutdown().await;
            }
        })
    };
    let mut buf = [0u8; 8192];
    let mut seen: Vec<u8> = Vec::new();
    loop {
        let n = match client_read.read(&mut buf).await {
            Ok(n) if n > 0 => n,
            _ => break,
        };
        if !stalled.load(Ordering::Relaxed) {
            seen.extend_from_slice(&buf[..n]);
            if seen.windows(needle.len()).any(|w| w == needle) {
                let mut f = faults.lock().unwrap_or_else(|e| e.into_inner());
                if f.stall_needle.as_deref() == Some(needle) {
                    f.stall_needle = None;
                    stalled.store(true, Ordering::Relaxed);
                    counts.stalled_by_needle.fetch_add(1, Ordering::Relaxed);
                }
            }
            if seen.len() > 64 * 1024 {
                seen.drain(..seen.len() - needle.len());
            }
        }
        if server_write.write_all(&buf[..n]).await.is_err() && !stalled.load(Ordering::Relaxed) {
            break;
        }
    }
    replies.abort();
    drop(client_write);
}

/// A listener with SO_REUSEADDR, so the port can be taken again right after
/// a cut, with the old connections still in TIME_WAIT.
async fn bind(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    socket.listen(1024)
}
