//! A real moto server on loopback, owned by one test: started on a free port,
//! killed and reaped on drop, its output kept in a temp file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::NamedTempFile;

use super::aws::Aws;
use super::env;

/// How long a fresh moto may take to answer. It imports every backend at
/// start-up, which takes a second or two on an idle machine and much longer
/// while cargo is compiling beside it.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Lines of moto's log printed when a test fails.
const LOG_TAIL_LINES: usize = 80;

/// A moto server process bound to `127.0.0.1:<port>`.
///
/// All state lives in the process's memory: [`stop`](Self::stop) and
/// [`restart`](Self::restart) lose every queue, topic, instance, load balancer
/// and alarm, exactly like a fresh server (moto 5.2.5 has no persistence; its
/// `/moto-api/` can reset state or record and replay requests, but replaying
/// would re-run receives and deletes, so the harness does not try). A test
/// that restarts moto recreates what it needs afterwards; queue URLs stay the
/// same because the port and the names do. To make the emulator unreachable
/// *without* losing state, use [`pause`](Self::pause) and
/// [`resume`](Self::resume) instead.
pub struct MotoServer {
    binary: PathBuf,
    port: u16,
    child: Option<Child>,
    paused: bool,
    log: NamedTempFile,
    /// Where moto's request recorder appends, once
    /// [`start_recording`](Self::start_recording) turns it on. One file per
    /// server: moto's default is `./moto_recording`, shared by every server.
    recording: NamedTempFile,
    /// Serve one request at a time (see [`start_single_threaded`](Self::start_single_threaded)).
    single_threaded: bool,
}

/// moto's server app run by werkzeug with `threaded=False`: one request at
/// a time, each on its own HTTP/1.0 connection.
const SINGLE_THREADED: &str = "import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
run_simple(sys.argv[1], int(sys.argv[2]), app, threaded=False, request_handler=MotoRequestHandler)
";

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers.
    ///
    /// Panics if `.venv/bin/moto_server` is missing: an end-to-end test that
    /// quietly skips is a test that never runs.
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Starts a moto that serves one request at a time, for DynamoDB with
    /// several writers: moto's DynamoDB reads, checks and writes with no
    /// lock, and a failed TransactWriteItems restores a copy of the whole
    /// table, so on the threaded server concurrent conditional writes are
    /// not atomic. Point reflex at it with `AWS_ENDPOINT_URL_DYNAMODB`, and
    /// keep SQS on a threaded server (a long poll would block this one).
    pub fn start_single_threaded() -> Self {
        Self::start_with(true)
    }

    fn start_with(single_threaded: bool) -> Self {
        let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
        assert!(
            binary.is_file(),
            "moto server not found at {}; run scripts/setup-venv",
            binary.display()
        );
        let log = NamedTempFile::with_prefix("reflex-moto-").expect("create moto log file");
        let recording = NamedTempFile::with_prefix("reflex-moto-recording-")
            .expect("create moto recording file");
        let mut server = MotoServer {
            binary,
            port: free_port(),
            child: None,
            paused: false,
            log,
            recording,
            single_threaded,
        };
        // Another process can take the port between our probe and moto's
        // bind; a fresh port on the next attempt is the cheap way out.
        let mut last_failure = String::new();
        for _ in 0..3 {
            match server.spawn_and_wait() {
                Ok(()) => return server,
                Err(failure) => last_failure = failure,
            }
            server.port = free_port();
        }
        panic!("moto server did not start: {last_failure}");
    }

    /// `http://127.0.0.1:<port>`, for SDK clients and `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// SDK clients for the test itself, pointed at this server.
    pub async fn aws(&self) -> Aws {
        Aws::connect(&self.endpoint()).await
    }

    /// Creates a table with the state store's layout (hash key `pk`, sort
    /// key `sk`, TTL on `expires_at`, on-demand) and returns a DynamoDB
    /// client for this server.
    pub async fn create_state_table(&self, table: &str) -> aws_sdk_dynamodb::Client {
        use aws_sdk_dynamodb::types::{
            AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
            TimeToLiveSpecification,
        };
        let credentials = aws_sdk_dynamodb::config::Credentials::new(
            "testing",
            "testing",
            None,
            None,
            "reflex-tests",
        );
        let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(self.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(credentials)
            .load()
            .await;
        let client = aws_sdk_dynamodb::Client::new(&config);
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute definition")
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key schema")
        };
        client
            .create_table()
            .table_name(table)
            .attribute_definitions(attr("pk"))
            .attribute_definitions(attr("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create table {table}: {e:?}"));
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name("expires_at")
                    .enabled(true)
                    .build()
                    .expect("ttl spec"),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("enable TTL on {table}: {e:?}"));
        client
    }

    /// The environment a spawned `reflex` needs to reach this server and
    /// nothing else. See [`env::aws_env`].
    pub fn env(&self) -> Vec<(String, String)> {
        env::aws_env(&self.endpoint())
    }

    /// Kills the server (SIGKILL, like a crash) and reaps it. Requests made
    /// afterwards are refused at connect time. Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process still dies of SIGKILL; no need to resume first.
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// Stops the server if it runs, then starts a fresh one on the same port
    /// and waits until it answers. The new server is empty (see the type's
    /// docs).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn_and_wait() {
                Ok(()) => return,
                // The old socket can linger for a moment after the kill.
                Err(failure) if Instant::now() < deadline && failure.contains("in use") => {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(failure) => panic!(
                    "moto server did not restart on port {}: {failure}",
                    self.port
                ),
            }
        }
    }

    /// Freezes the server (SIGSTOP) without losing state. The kernel still
    /// accepts connections on its port, so clients see requests hang until
    /// their own timeouts rather than being refused.
    pub fn pause(&mut self) {
        let pid = self
            .child
            .as_ref()
            .expect("moto server is not running")
            .id();
        signal(pid, "STOP");
        self.paused = true;
    }

    /// Thaws a server frozen by [`pause`](Self::pause); requests queued in
    /// the meantime are then served.
    pub fn resume(&mut self) {
        let pid = self
            .child
            .as_ref()
            .expect("moto server is not running")
            .id();
        signal(pid, "CONT");
        self.paused = false;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// True while the process is alive (paused counts as alive).
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Wipes all state in place through moto's own API, keeping the process.
    pub fn reset(&self) {
        let response = http_request(self.port, "POST", "/moto-api/reset")
            .unwrap_or_else(|error| panic!("moto reset failed: {error}"));
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "moto reset answered: {response}"
        );
    }

    /// Turns on moto's request recorder: from now on every AWS request the
    /// server receives is kept, so a test can prove a call was made even when
    /// moto's state does not show it (RebootInstances changes nothing
    /// observable on a running instance).
    pub fn start_recording(&self) {
        let response = http_request(self.port, "POST", "/moto-api/recorder/start-recording")
            .unwrap_or_else(|error| panic!("moto start-recording failed: {error}"));
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "moto start-recording answered: {response}"
        );
    }

    /// The requests recorded since [`start_recording`](Self::start_recording),
    /// in order of arrival.
    pub fn recorded_requests(&self) -> Vec<RecordedRequest> {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.recording.path()) {
            let _ = file.read_to_string(&mut text);
        }
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                let entry: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!("moto recorded a line that is not JSON ({e}): {line}")
                });
                RecordedRequest::from_entry(&entry)
            })
            .collect()
    }

    /// The recorded Query-protocol requests (EC2, ELB, SQS over Query, SNS,
    /// CloudWatch) whose `Action` is `action`.
    pub fn recorded_actions(&self, action: &str) -> Vec<RecordedRequest> {
        self.recorded_requests()
            .into_iter()
            .filter(|r| r.param("Action").as_deref() == Some(action))
            .collect()
    }

    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// Everything moto has written to stdout and stderr, across restarts.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(self.log.path()) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    fn spawn_and_wait(&mut self) -> Result<(), String> {
        let out = OpenOptions::new()
            .append(true)
            .open(self.log.path())
            .map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let _ = writeln!(
            &out,
            "--- reflex harness: starting moto on port {} ---",
            self.port
        );
        let mut command = if self.single_threaded {
            let python = self.binary.with_file_name("python");
            let mut c = Command::new(python);
            c.args(["-c", SINGLE_THREADED, "127.0.0.1", &self.port.to_string()]);
            c
        } else {
            let mut c = Command::new(&self.binary);
            c.args(["-H", "127.0.0.1", "-p", &self.port.to_string()]);
            c
        };
        let child = command
            .env("PYTHONUNBUFFERED", "1")
            .env("MOTO_RECORDER_FILEPATH", self.recording.path())
            .env_remove("MOTO_ENABLE_RECORDING")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        self.paused = false;

        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                let logs = self.logs();
                let cause = if logs.contains("Address already in use") {
                    "port in use; "
                } else {
                    ""
                };
                return Err(format!(
                    "{cause}moto exited with {status}; log:\n{}",
                    tail(&logs, LOG_TAIL_LINES)
                ));
            }
            if let Ok(status_line) = http_request(self.port, "GET", "/moto-api/") {
                // HTTP/1.0 from the single-threaded server.
                if status_line.starts_with("HTTP/1.1 200")
                    || status_line.starts_with("HTTP/1.0 200")
                {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                self.stop();
                return Err(format!(
                    "no answer on port {} within {READY_TIMEOUT:?}; log:\n{}",
                    self.port,
                    tail(&self.logs(), LOG_TAIL_LINES)
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- last {LOG_TAIL_LINES} lines of moto's log ({}) ---\n{}",
                self.log.path().display(),
                tail(&self.logs(), LOG_TAIL_LINES)
            );
        }
        self.stop();
    }
}

/// One request as moto's recorder saw it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    pub url: String,
    /// The body, decoded (moto stores it base64-encoded).
    pub body: String,
}

impl RecordedRequest {
    fn from_entry(entry: &serde_json::Value) -> Self {
        let field = |name: &str| entry[name].as_str().unwrap_or_default().to_owned();
        let raw = field("body");
        let body = if entry["body_encoded"].as_bool() == Some(true) {
            let bytes = aws_smithy_types::base64::decode(&raw)
                .unwrap_or_else(|e| panic!("moto recorded a body that is not base64 ({e})"));
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            raw
        };
        RecordedRequest {
            method: field("method"),
            url: field("url"),
            body,
        }
    }

    /// Every value of a form parameter (`InstanceId.1=...`) of the body or
    /// the query string, percent-decoded.
    pub fn params(&self) -> Vec<(String, String)> {
        let query = self.url.split_once('?').map_or("", |(_, q)| q);
        query
            .split('&')
            .chain(self.body.split('&'))
            .filter(|pair| !pair.is_empty())
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                Some((percent_decode(k)?, percent_decode(v)?))
            })
            .collect()
    }

    /// The first value of a form parameter.
    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// The values of a list parameter (`InstanceId.1`, `InstanceId.2`, ...).
    pub fn list_param(&self, name: &str) -> Vec<String> {
        let prefix = format!("{name}.");
        self.params()
            .into_iter()
            .filter(|(k, _)| {
                k.strip_prefix(&prefix)
                    .is_some_and(|n| n.chars().all(|c| c.is_ascii_digit()))
            })
            .map(|(_, v)| v)
            .collect()
    }
}

/// `application/x-www-form-urlencoded` decoding; `None` if malformed.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// A port nobody listens on right now. The OS picks it, so parallel tests
/// do not collide; the window until moto binds it is covered by a retry.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a free loopback port")
}

/// One HTTP/1.1 request without a body; returns the status line. Enough for
/// a readiness probe and `/moto-api/reset`, without an HTTP client crate.
fn http_request(port: u16, method: &str, path: &str) -> Result<String, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or_default().to_owned())
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("run kill(1)");
    assert!(status.success(), "kill -{name} {pid} failed");
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
