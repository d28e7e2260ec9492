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
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinHandle;

/// Connections the proxy is carrying, so a cut can reset them.
type Connections = Arc<Mutex<Vec<JoinHandle<()>>>>;

/// The proxy. Spawns tasks on the current tokio runtime: use it from a
/// multi-threaded test runtime so it forwards while the test blocks.
pub struct FaultProxy {
    port: u16,
    upstream: SocketAddr,
    accept: Mutex<Option<JoinHandle<()>>>,
    connections: Connections,
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
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let conn = tokio::spawn(async move {
                    // moto unreachable behind a reachable proxy: close.
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
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

/// A listener with SO_REUSEADDR, so the port can be taken again right after
/// a cut, with the old connections still in TIME_WAIT.
async fn bind(port: u16) -> std::io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port)))?;
    socket.listen(1024)
}
