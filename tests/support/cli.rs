//! The `reflex` binary cargo built for these tests, run once to completion
//! (`check`, `explain`, `audit`, `dlq`, …): a clean environment, optional
//! stdin, and the output with helpers to read it. A daemon (`reflex run`)
//! is [`Reflex`](super::Reflex) instead.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The binary under test.
pub const REFLEX_BIN: &str = env!("CARGO_BIN_EXE_reflex");

/// The repository root (the working directory of every run).
pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `reflex` without the developer's `REFLEX_*` variables, which would
/// change what it does behind the test's back.
pub fn reflex_command() -> Command {
    let mut command = Command::new(REFLEX_BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("REFLEX_") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `reflex ARGS` from the repository root, optionally with stdin, and
/// fails the test if it panicked.
pub fn run_reflex(args: &[&str], stdin: Option<&[u8]>) -> Output {
    run(reflex_command(), args, stdin)
}

/// [`run_reflex`] talking to the moto at `endpoint` (and nothing else),
/// off the async runtime's thread.
pub async fn run_reflex_on(endpoint: &str, args: &[&str]) -> Output {
    use super::env::MotoEnv as _;
    let mut command = reflex_command();
    command.moto_env(endpoint);
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(command, &args, None)
    })
    .await
    .expect("the reflex run did not panic")
}

fn run(mut command: Command, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = command
        .args(args)
        .current_dir(repo())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {REFLEX_BIN}: {e}"));
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
    }
    let out = child.wait_with_output().expect("run reflex");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("panicked"),
        "reflex {args:?} panicked:\n{stderr}"
    );
    out
}

/// The exit code (panics if a signal killed it).
pub fn code(out: &Output) -> i32 {
    out.status.code().expect("exited, not killed")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit code, stdout and stderr, for failure messages.
pub fn describe(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// stdout must be exactly one JSON value (one line), nothing before or after.
pub fn one_json(out: &Output) -> Value {
    let text = stdout(out);
    assert_eq!(
        text.trim_end().lines().count(),
        1,
        "expected one line of JSON:\n{}",
        describe(out)
    );
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not one JSON value ({e}):\n{text}"))
}
