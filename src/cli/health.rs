//! `reflex health`: asks a running daemon's `/readyz` (on loopback) whether
//! it is ready, and exits 0 if so, 1 if not. It exists for container health
//! checks: the distroless image has no shell and no curl, so the ECS task
//! definition (and the Dockerfile's HEALTHCHECK) run the binary itself.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::Args;

use super::exit;

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The daemon's listen address (`metrics.listen`). An unspecified
    /// address (0.0.0.0) is checked on loopback.
    #[arg(
        long,
        env = "REFLEX_METRICS_LISTEN",
        default_value = "127.0.0.1:9464",
        value_name = "ADDR"
    )]
    pub listen: String,
    /// How long to wait for the answer, connection included.
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Why the daemon is not healthy.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unhealthy {
    #[error("{0:?} is not an address like 127.0.0.1:9464 (is metrics.listen \"off\"? then nothing can be checked)")]
    BadAddress(String),
    #[error("cannot reach /readyz at {addr}: {reason}")]
    Unreachable { addr: SocketAddr, reason: String },
    #[error("not an HTTP answer from {addr}")]
    NotHttp { addr: SocketAddr },
    #[error("not ready (HTTP {status}): {reason}")]
    NotReady { status: u16, reason: String },
}

pub fn run(args: &HealthArgs) -> u8 {
    match check(&args.listen, args.timeout) {
        Ok(body) => {
            println!("{}", body.trim_end());
            exit::OK
        }
        Err(e) => {
            eprintln!("unhealthy: {e}");
            exit::FAILED
        }
    }
}

/// The address to connect to for a listen address: loopback for an
/// unspecified one.
pub fn target(listen: &str) -> Result<SocketAddr, Unhealthy> {
    let mut addr: SocketAddr = listen
        .trim()
        .parse()
        .map_err(|_| Unhealthy::BadAddress(listen.to_string()))?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    if addr.port() == 0 {
        return Err(Unhealthy::BadAddress(listen.to_string()));
    }
    Ok(addr)
}

/// GET /readyz; the body when the answer is 200.
pub fn check(listen: &str, timeout: Duration) -> Result<String, Unhealthy> {
    let addr = target(listen)?;
    let deadline = Instant::now() + timeout;
    let unreachable = |e: std::io::Error| Unhealthy::Unreachable {
        addr,
        reason: e.to_string(),
    };
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(unreachable)?;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    stream.set_read_timeout(Some(left)).map_err(unreachable)?;
    stream.set_write_timeout(Some(left)).map_err(unreachable)?;
    let request = format!(
        "GET /readyz HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: reflex-health\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    // /readyz answers a line or two; anything longer is not that endpoint.
    let mut response = Vec::new();
    stream
        .take(64 * 1024)
        .read_to_end(&mut response)
        .map_err(unreachable)?;
    let (status, body) = parse_response(&response).ok_or(Unhealthy::NotHttp { addr })?;
    if status == 200 {
        Ok(body)
    } else {
        Err(Unhealthy::NotReady {
            status,
            reason: body.trim().to_string(),
        })
    }
}

/// The status code and body of an HTTP/1.x response (the body as text, with
/// chunked transfer encoding undone).
pub fn parse_response(response: &[u8]) -> Option<(u16, String)> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let mut parts = status_line.splitn(3, ' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = parts.next()?.parse().ok()?;
    let chunked = lines.any(|h| {
        h.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut rest: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(after.get(..size)?);
        rest = after.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves one connection with a canned answer.
    fn serve_once(answer: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let n = s.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).to_string();
                let answer = if request.starts_with("GET /readyz HTTP/1.1\r\n") {
                    answer
                } else {
                    "HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\n\r\nwrong url"
                };
                let _ = s.write_all(answer.as_bytes());
            }
        });
        addr
    }

    #[test]
    fn ready_is_ok() {
        let addr = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 32\r\n\r\nready: 3 rules, version abc123\n",
        );
        let body = check(&addr.to_string(), Duration::from_secs(2)).expect("healthy");
        assert!(body.starts_with("ready: 3 rules"), "{body:?}");
    }

    #[test]
    fn not_ready_carries_the_reason() {
        let addr = serve_once(
            "HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n12\r\nqueue unreachable\n\r\n0\r\n\r\n",
        );
        assert_eq!(
            check(&addr.to_string(), Duration::from_secs(2)),
            Err(Unhealthy::NotReady {
                status: 503,
                reason: "queue unreachable".to_string()
            })
        );
    }

    #[test]
    fn nothing_listening_is_unhealthy() {
        // Bind, then free the port: nothing listens there any more.
        let addr = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        match check(&addr.to_string(), Duration::from_secs(1)) {
            Err(Unhealthy::Unreachable { addr: a, .. }) => assert_eq!(a, addr),
            other => panic!("expected Unreachable, got {other:?}"),
        }
    }

    #[test]
    fn garbage_is_not_http() {
        let addr = serve_once("SSH-2.0-OpenSSH\r\n\r\n");
        assert_eq!(
            check(&addr.to_string(), Duration::from_secs(2)),
            Err(Unhealthy::NotHttp { addr })
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(
            target("0.0.0.0:9464"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert_eq!(
            target("[::]:9464").map(|a| a.ip()),
            Ok(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
        assert!(matches!(target("off"), Err(Unhealthy::BadAddress(_))));
        assert!(matches!(
            target("127.0.0.1:0"),
            Err(Unhealthy::BadAddress(_))
        ));
    }
}
