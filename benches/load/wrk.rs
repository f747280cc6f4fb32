//! Drives `wrk` (installing Debian's package when it is missing) with a Lua script per kind of load, and
//! reads back one result line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::measure::Measured;
use crate::servers::RAISE_NOFILE;

const COMMON: &str = include_str!("lua/common.lua");
const REPLAY: &str = include_str!("lua/replay.lua");
const REFRESH: &str = include_str!("lua/refresh.lua");
const FIXED: &str = include_str!("lua/fixed.lua");

/// What each connection sends.
pub enum Script {
    /// The same request again and again (wrk's fastest path).
    Plain,
    /// Pre-formatted raw requests (see `request`), spread over the threads and sent in order, starting over
    /// when they run out. `single_use`: starting over is a fault of the scenario (say, an Idempotency-Key
    /// sent twice) and is reported.
    Replay {
        requests: Vec<String>,
        single_use: bool,
    },
    /// One `GET path` with a bearer token per wrk thread (`(path, token)`, one for each thread), built once by
    /// wrk: the load generator's cheapest way to send authenticated reads.
    BearerGetPerThread { requests: Vec<(String, String)> },
    /// `POST /v1/auth/refresh`, one chain of single-use refresh tokens per connection.
    RefreshChains { tokens: Vec<String> },
}

/// One wrk run: `connections` connections to `port` for a fixed time.
pub struct WrkJob {
    pub port: u16,
    /// The path of the default request (the only one for `Script::Plain`).
    pub path: String,
    pub connections: usize,
    pub script: Script,
}

/// A raw HTTP/1.1 request for `Script::Replay`. `headers` are `(name, value)`; the body, when given, is
/// sent as JSON.
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], json: Option<&str>) -> String {
    let mut r = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    for (name, value) in headers {
        r.push_str(&format!("{name}: {value}\r\n"));
    }
    match json {
        Some(body) => r.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )),
        None => r.push_str("\r\n"),
    }
    r
}

/// Finds wrk, or installs Debian's package (as root) with a clear message.
pub fn ensure_installed() -> anyhow::Result<()> {
    let found = || {
        std::process::Command::new("wrk")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    };
    if found() {
        return Ok(());
    }
    eprintln!("wrk is not installed: installing Debian's `wrk` package with apt-get…");
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !apt(&["install", "-y", "-q", "wrk"]) {
        let _ = apt(&["update", "-q"]);
        apt(&["install", "-y", "-q", "wrk"]);
    }
    if !found() {
        bail!(
            "wrk is missing and could not be installed; install it (`sudo apt-get install wrk`) and run again"
        );
    }
    Ok(())
}

/// Runs `job` for `duration` (whole seconds, at least 1) with `threads` threads; `dir` holds its files.
pub async fn run(
    job: &WrkJob,
    duration: Duration,
    threads: usize,
    dir: &Path,
) -> anyhow::Result<Measured> {
    let threads = threads.clamp(1, job.connections.max(1));
    let script_path = dir.join("script.lua");
    let mut script = COMMON.to_owned();
    let mut script_args: Vec<String> = Vec::new();
    let mut single_use = false;
    match &job.script {
        Script::Plain => {}
        Script::Replay {
            requests,
            single_use: once,
        } => {
            if requests.len() < threads {
                bail!("a replay needs at least one request per wrk thread");
            }
            single_use = *once;
            let file = write_file(dir, "requests.bin", &requests.join("\0"))?;
            script.push_str(REPLAY);
            script_args = vec![file.display().to_string(), threads.to_string()];
        }
        Script::BearerGetPerThread { requests } => {
            if requests.len() < threads {
                bail!("a fixed read needs one request per wrk thread");
            }
            let lines: Vec<String> = requests.iter().map(|(p, t)| format!("{p}\t{t}")).collect();
            let file = write_file(dir, "fixed.txt", &lines.join("\n"))?;
            script.push_str(FIXED);
            script_args = vec![file.display().to_string(), threads.to_string()];
        }
        Script::RefreshChains { tokens } => {
            if tokens.len() < job.connections {
                bail!(
                    "{} refresh chains for {} connections: each connection needs its own",
                    tokens.len(),
                    job.connections
                );
            }
            let file = write_file(dir, "tokens.txt", &tokens.join("\n"))?;
            script.push_str(REFRESH);
            script_args = vec![file.display().to_string(), threads.to_string()];
        }
    }
    std::fs::write(&script_path, script)?;
    let secs = duration.as_secs_f64().ceil().max(1.0) as u64;
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(RAISE_NOFILE)
        .arg("wrk")
        .arg(format!("-t{threads}"))
        .arg(format!("-c{}", job.connections))
        .arg(format!("-d{secs}s"))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(&script_path)
        .arg(format!("http://127.0.0.1:{}{}", job.port, job.path))
        .arg("--")
        .args(&script_args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().find_map(|l| l.strip_prefix("WRK_RESULT ")) else {
        bail!(
            "wrk gave no result ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let [
        requests,
        duration_us,
        p50,
        _p90,
        p99,
        _max,
        connect,
        read,
        write,
        status,
        timeout,
        wrapped,
        lost,
    ] = v[..]
    else {
        bail!("cannot read wrk's result line: {line}");
    };
    let mut notes: Vec<String> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("WRK_FIRST_FAILURE "))
        .take(1)
        .map(|f| format!("first failure: {f}"))
        .collect();
    if connect + read + write + timeout > 0 {
        notes.push(format!(
            "socket errors: connect {connect}, read {read}, write {write}, timeout {timeout}"
        ));
    }
    if status > 0 {
        notes.push(format!("{status} answers were not 2xx/3xx"));
    }
    if single_use && wrapped > 0 {
        notes.push(format!(
            "single-use requests ran out and were sent again ({wrapped} times)"
        ));
    }
    if lost > 0 {
        notes.push(format!("{lost} requests had no live input (a chain broke)"));
    }
    let us = Duration::from_micros;
    Ok(Measured {
        requests: requests.saturating_sub(status),
        failures: status + connect + read + write + timeout,
        duration: us(duration_us),
        p50: us(p50),
        p99: us(p99),
        notes,
    })
}

fn write_file(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, text)?;
    Ok(path)
}
