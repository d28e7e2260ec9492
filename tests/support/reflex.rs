//! The real `reflex run` binary as a child process of one test: rules and
//! `reflex.toml` written to a temp dir, JSON logs captured to a temp file,
//! killed and reaped on drop, its log printed when the test fails.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use tempfile::{NamedTempFile, TempDir};

use super::aws::Pipeline;
use super::env::MotoEnv;

/// Lines of reflex's log printed when a test fails.
const LOG_TAIL_LINES: usize = 120;

/// How often [`Reflex::wait_until`] and friends re-check.
const POLL_EVERY: Duration = Duration::from_millis(100);

/// What to start `reflex run` with. Build it with [`Reflex::builder`].
#[derive(Clone, Debug)]
pub struct ReflexBuilder {
    endpoint: String,
    queue_url: String,
    dlq_url: String,
    trusted_topic_arns: Vec<String>,
    rules: Vec<(String, String)>,
    /// `--rules` with this (an `s3://` URL) instead of the rules directory.
    rules_source: Option<String>,
    /// `reflex.toml`; `None` runs with flags only.
    config: Option<toml::Table>,
    args: Vec<String>,
    /// Extra environment, set last (so it wins over the defaults).
    envs: Vec<(String, String)>,
}

impl ReflexBuilder {
    /// Sets an environment variable of the daemon, after the defaults: e.g.
    /// `AWS_ENDPOINT_URL_DYNAMODB`, or `REFLEX_STATE_PATH` to keep one state
    /// file across restarts.
    pub fn env(mut self, name: &str, value: impl Into<String>) -> Self {
        self.envs.push((name.to_owned(), value.into()));
        self
    }

    /// Adds a rule file (`name` like `"elb.toml"`) to the rules directory.
    pub fn rule(mut self, name: &str, text: &str) -> Self {
        self.rules.push((name.to_owned(), text.to_owned()));
        self
    }

    /// Reads the rules from `source` (an `s3://bucket/prefix/` URL) instead
    /// of the directory [`ReflexBuilder::rule`] fills.
    pub fn rules_source(mut self, source: &str) -> Self {
        self.rules_source = Some(source.to_owned());
        self
    }

    /// Sets a `reflex.toml` key by dotted path, e.g.
    /// `set("limits.instance_changes", "1/hour")` or
    /// `set("receive.pollers", 2)`.
    pub fn set(mut self, path: &str, value: impl Into<toml::Value>) -> Self {
        let config = self.config.get_or_insert_with(toml::Table::new);
        let mut keys: Vec<&str> = path.split('.').collect();
        let last = keys.pop().expect("a non-empty key path");
        let mut table = config;
        for key in keys {
            table = table
                .entry(key)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key} in {path} is not a table"));
        }
        table.insert(last.to_owned(), value.into());
        self
    }

    /// Runs without a `reflex.toml`: everything from flags and defaults
    /// (20 s long polls, 10 s retry base).
    pub fn without_config_file(mut self) -> Self {
        self.config = None;
        self
    }

    /// Trusts one more SNS topic.
    pub fn trust(mut self, topic_arn: &str) -> Self {
        self.trusted_topic_arns.push(topic_arn.to_owned());
        self
    }

    /// Extra arguments after `run` (e.g. `--dry-run`).
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    /// Writes the rules and the config, and starts the daemon. Does not wait
    /// for it to be ready: messages already on the queue wait for it.
    pub fn spawn(self) -> Reflex {
        let dir = tempfile::Builder::new()
            .prefix("reflex-e2e-")
            .tempdir()
            .expect("create a temp dir for reflex");
        let rules_dir = dir.path().join("rules");
        std::fs::create_dir(&rules_dir).expect("create the rules dir");
        for (name, text) in &self.rules {
            std::fs::write(rules_dir.join(name), text).expect("write a rule file");
        }
        let log = NamedTempFile::with_prefix("reflex-e2e-log-").expect("create reflex log file");
        let out =
            NamedTempFile::with_prefix("reflex-e2e-stdout-").expect("create reflex stdout file");
        let open = |path: &Path| {
            OpenOptions::new()
                .append(true)
                .open(path)
                .expect("open a reflex output file")
        };

        let mut command = Command::new(env!("CARGO_BIN_EXE_reflex"));
        // The developer's REFLEX_* settings would change what the child
        // does behind the test's back.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("REFLEX_") {
                command.env_remove(name);
            }
        }
        command
            .moto_env(&self.endpoint)
            .env("REFLEX_LOG", "info")
            // The default local state file is per working directory, and
            // only one live reflex may hold one: each daemon gets its own.
            .env("REFLEX_STATE_PATH", dir.path().join("reflex-state.redb"))
            // Tests run side by side: a fixed metrics port would collide.
            .env("REFLEX_METRICS_LISTEN", "127.0.0.1:0")
            .envs(self.envs.iter().map(|(k, v)| (k, v)))
            .args(["--log-format", "json", "run"]);
        let mut config_path = None;
        if let Some(config) = &self.config {
            let path = dir.path().join("reflex.toml");
            std::fs::write(&path, toml::to_string(config).expect("config serialises"))
                .expect("write reflex.toml");
            command.arg("--config").arg(&path);
            config_path = Some(path);
        }
        command
            .args(["--queue-url", &self.queue_url, "--dlq-url", &self.dlq_url])
            .arg("--rules");
        match &self.rules_source {
            Some(source) => command.arg(source),
            None => command.arg(&rules_dir),
        };
        for topic in &self.trusted_topic_arns {
            command.args(["--trusted-topic-arn", topic]);
        }
        command
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(open(out.path()))
            .stderr(open(log.path()));
        let child = command.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e} (built by cargo for integration tests)",
                env!("CARGO_BIN_EXE_reflex")
            )
        });
        Reflex {
            pid: child.id(),
            child: Mutex::new(Some(child)),
            exit: Mutex::new(None),
            log,
            out,
            config_path,
            rules_dir,
            _dir: dir,
        }
    }
}

/// A running `reflex run`. Dropping it kills (SIGKILL) and reaps the process;
/// if the test is failing, the tail of its log is printed (all of it, for
/// every test, with `REFLEX_E2E_SHOW_LOGS=1 cargo test -- --nocapture`).
pub struct Reflex {
    pid: u32,
    child: Mutex<Option<Child>>,
    exit: Mutex<Option<ExitStatus>>,
    /// stderr: the JSON log.
    log: NamedTempFile,
    /// stdout: the audit trail, when the daemon writes one there.
    out: NamedTempFile,
    config_path: Option<PathBuf>,
    rules_dir: PathBuf,
    _dir: TempDir,
}

impl Reflex {
    /// A daemon for `pipeline` on the moto at `endpoint`, trusting the
    /// pipeline's alarm topic, with a `reflex.toml` tuned for tests: 1 s long
    /// polls, 1-4 s retry backoff, 10 s visibility with a 3 s heartbeat.
    pub fn builder(endpoint: &str, pipeline: &Pipeline) -> ReflexBuilder {
        ReflexBuilder {
            endpoint: endpoint.to_owned(),
            queue_url: pipeline.queue_url.clone(),
            dlq_url: pipeline.dlq_url.clone(),
            trusted_topic_arns: vec![pipeline.topic_arn.clone()],
            rules: Vec::new(),
            rules_source: None,
            config: None,
            args: Vec::new(),
            envs: Vec::new(),
        }
        .set("shutdown_grace", "10s")
        .set("receive.wait", "1s")
        .set("receive.visibility_timeout", "10s")
        .set("receive.heartbeat", "3s")
        .set("retry.base", "1s")
        .set("retry.max", "4s")
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn log_path(&self) -> &Path {
        self.log.path()
    }

    pub fn rules_dir(&self) -> &Path {
        &self.rules_dir
    }

    pub fn config_path(&self) -> Option<&Path> {
        self.config_path.as_deref()
    }

    /// Everything the daemon has logged so far on stderr (JSON lines, plus
    /// any plain text it printed before logging was set up).
    pub fn logs(&self) -> String {
        read(self.log.path())
    }

    /// Everything the daemon has written to stdout so far.
    pub fn stdout(&self) -> String {
        read(self.out.path())
    }

    /// The JSON log events so far, in order; lines that are not JSON are
    /// skipped (a line being written right now may be incomplete).
    pub fn events(&self) -> Vec<Value> {
        self.logs()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// The log events whose `message` is `message`.
    pub fn events_with_message(&self, message: &str) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["message"] == message)
            .collect()
    }

    /// The exit status, if the process has exited (reaps it).
    pub fn try_exit(&self) -> Option<ExitStatus> {
        let mut exit = self.exit.lock().unwrap_or_else(|e| e.into_inner());
        if exit.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(c) = child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    *exit = Some(status);
                    *child = None;
                }
            }
        }
        *exit
    }

    /// Panics, with the daemon's log, if it is no longer running.
    pub fn assert_running(&self) {
        if let Some(status) = self.try_exit() {
            panic!(
                "reflex exited early with {status}; its log:\n{}",
                tail(&self.logs(), LOG_TAIL_LINES)
            );
        }
    }

    /// Polls `check` until it returns true, failing fast (with the log) if
    /// the daemon dies, and after `timeout` naming `what`.
    pub async fn wait_until<F, Fut>(&self, timeout: Duration, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let started = tokio::time::Instant::now();
        loop {
            self.assert_running();
            if check().await {
                return;
            }
            if started.elapsed() >= timeout {
                panic!("timed out after {timeout:?} waiting until {what}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Waits for the first log event matching `matches`, and returns it.
    pub async fn wait_for_event(
        &self,
        timeout: Duration,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Value {
        let started = tokio::time::Instant::now();
        loop {
            self.assert_running();
            if let Some(event) = self.events().into_iter().find(|e| matches(e)) {
                return event;
            }
            if started.elapsed() >= timeout {
                panic!("timed out after {timeout:?} waiting for a log event: {what}");
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// The address `/metrics`, `/healthz` and `/readyz` are served on, once
    /// the daemon has logged it.
    pub async fn listen_address(&self) -> String {
        let served = self
            .wait_for_event(Duration::from_secs(40), "the metrics listener is up", |e| {
                e["message"] == "Serving /metrics, /healthz and /readyz."
            })
            .await;
        served["address"]
            .as_str()
            .expect("the bound address is logged")
            .to_string()
    }

    /// Kills the daemon with SIGKILL, like a crash or the OOM killer, and
    /// reaps it. Its log and stdout stay readable.
    pub fn kill9(&self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            if let Ok(status) = c.wait() {
                *self.exit.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
            }
        }
    }

    /// The audit trail's JSON records so far (the daemon's stdout, with
    /// the default `audit.sink = "stdout"`).
    pub fn audit_records(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(Value::is_object)
            .collect()
    }

    /// Sends SIGTERM (what `docker stop` and Kubernetes send).
    pub fn sigterm(&self) {
        assert!(self.try_exit().is_none(), "reflex is not running");
        let status = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .expect("run kill(1)");
        assert!(status.success(), "kill -TERM {} failed", self.pid);
    }

    /// Waits for the process to exit; panics after `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> ExitStatus {
        let started = tokio::time::Instant::now();
        loop {
            if let Some(status) = self.try_exit() {
                return status;
            }
            if started.elapsed() >= timeout {
                panic!(
                    "reflex (pid {}) still running {timeout:?} after being asked to stop",
                    self.pid
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// SIGTERM, then expects a clean exit (status 0) within 25 s and no
    /// ERROR-level log line over the daemon's whole life. (A long poll still
    /// out is let finish: up to 20 s without a `reflex.toml`.)
    pub async fn shutdown_cleanly(&self) {
        self.sigterm();
        let status = self.wait_exit(Duration::from_secs(25)).await;
        assert!(status.success(), "reflex exited with {status}");
        let errors: Vec<Value> = self
            .events()
            .into_iter()
            .filter(|e| e["level"] == "ERROR")
            .collect();
        assert!(errors.is_empty(), "reflex logged errors: {errors:#?}");
    }
}

impl Drop for Reflex {
    fn drop(&mut self) {
        let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::env::var_os("REFLEX_E2E_SHOW_LOGS").is_some() {
            eprintln!("--- reflex's log (pid {}) ---\n{}", self.pid, self.logs());
        } else if std::thread::panicking() {
            eprintln!(
                "--- last {LOG_TAIL_LINES} lines of reflex's log ({}) ---\n{}",
                self.log.path().display(),
                tail(&self.logs(), LOG_TAIL_LINES)
            );
        }
    }
}

fn read(path: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut file) = File::open(path) {
        let _ = file.read_to_string(&mut text);
    }
    text
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One plain HTTP/1.1 GET on loopback: (status, body). For `/metrics`,
/// `/healthz` and `/readyz` of a running daemon.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read as _, Write as _};
    let mut stream =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

impl Reflex {
    /// The address `/metrics` is served on, once the daemon says so.
    pub async fn metrics_address(&self) -> String {
        let served = self
            .wait_for_event(super::WAIT, "the metrics listener is up", |e| {
                e["message"] == "Serving /metrics, /healthz and /readyz."
            })
            .await;
        served["address"]
            .as_str()
            .expect("the bound address is logged")
            .to_string()
    }

    /// The value of one metric line (`name{labels}`) on `/metrics`, if any.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        let (status, body) = http_get(&self.metrics_address().await, "/metrics");
        assert_eq!(status, 200, "{body}");
        sample(&body, &format!("{series} "))
    }
}

/// The value of the first sample of a Prometheus text whose line starts
/// with `prefix` (a metric name with its labels).
pub fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}
