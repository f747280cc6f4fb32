//! What /proc says: resident memory of a process, CPU time split between the server, PostgreSQL, the load
//! generator and everything else on the machine (other builds sharing the cores show up there), and the
//! machine itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A `Vm…:` line of /proc/PID/status, in KiB.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
}

/// Resets the peak resident set (VmHWM) of `pid` to its current size (Linux ≥ 4.0); false when refused.
pub fn reset_peak(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}

/// Polls VmRSS every 20 ms and keeps the largest value: the peak, even where VmHWM cannot be reset.
pub struct RssProbe {
    /// VmRSS when the probe started.
    pub start_kib: u64,
    max_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    pid: u32,
    hwm_reset: bool,
}

impl RssProbe {
    pub fn start(pid: u32) -> Self {
        let hwm_reset = reset_peak(pid);
        let start_kib = status_kib(pid, "VmRSS").unwrap_or(0);
        let max_kib = Arc::new(AtomicU64::new(start_kib));
        let max = max_kib.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            loop {
                tick.tick().await;
                match status_kib(pid, "VmRSS") {
                    Some(kib) => {
                        max.fetch_max(kib, Ordering::Relaxed);
                    }
                    None => return,
                }
            }
        });
        Self {
            start_kib,
            max_kib,
            task,
            pid,
            hwm_reset,
        }
    }

    /// The peak since `start`, in KiB.
    pub fn stop(self) -> u64 {
        self.task.abort();
        let polled = self.max_kib.load(Ordering::Relaxed);
        let hwm = if self.hwm_reset {
            status_kib(self.pid, "VmHWM").unwrap_or(0)
        } else {
            0
        };
        polled.max(hwm)
    }
}

fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Fields 14 to 17 of /proc/PID/stat: utime, stime, cutime, cstime (clock ticks).
fn stat_times(pid: &str) -> Option<[u64; 4]> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields are counted after its closing parenthesis (field 2).
    let rest = &text[text.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3, so field n is f[n - 3].
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse().ok());
    Some([n(14)?, n(15)?, n(16)?, n(17)?])
}

fn machine_busy_ticks() -> u64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = text.lines().next().unwrap_or("");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already inside user)
    [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum()
}

fn postgres_ticks() -> HashMap<u32, u64> {
    let mut out = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim() == "postgres"
            && let Some(t) = stat_times(&pid.to_string())
        {
            out.insert(pid, t[0] + t[1]);
        }
    }
    out
}

/// CPU counters at one instant.
pub struct CpuSnapshot {
    at: Instant,
    machine: u64,
    server: u64,
    postgres: HashMap<u32, u64>,
    /// This process (the login generator) and its waited-for children (wrk).
    harness: u64,
}

impl CpuSnapshot {
    pub fn take(server_pid: u32) -> Self {
        let server = stat_times(&server_pid.to_string()).map_or(0, |t| t[0] + t[1]);
        let harness = stat_times("self").map_or(0, |t| t.iter().sum());
        Self {
            at: Instant::now(),
            machine: machine_busy_ticks(),
            server,
            postgres: postgres_ticks(),
            harness,
        }
    }

    /// Average cores busy between `self` and `later`, by whom.
    pub fn until(&self, later: &CpuSnapshot) -> CpuShare {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let hz = clock_ticks_per_second();
        let cores = |ticks: u64| ticks as f64 / hz / secs;
        let postgres: u64 = later
            .postgres
            .iter()
            .map(|(pid, t)| t.saturating_sub(*self.postgres.get(pid).unwrap_or(&0)))
            .sum();
        let server = later.server.saturating_sub(self.server);
        let harness = later.harness.saturating_sub(self.harness);
        let machine = later.machine.saturating_sub(self.machine);
        CpuShare {
            server: cores(server),
            postgres: cores(postgres),
            load_generator: cores(harness),
            other: cores(machine.saturating_sub(server + postgres + harness)),
        }
    }
}

/// Average cores busy during a measurement.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuShare {
    pub server: f64,
    pub postgres: f64,
    pub load_generator: f64,
    /// Everything else on the machine: other agents' builds, the kernel's own threads, …
    pub other: f64,
}

pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    /// `kernel.sched_autogroup_enabled`: each session (every PostgreSQL backend is one) a scheduling group of
    /// its own, which weighs as much as shopd's whole session, hashing threads included (see
    /// docs/performance.md). `None` where the kernel has no such setting.
    pub autogroup: Option<bool>,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name")?.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let memory_gib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))?
                    .split_whitespace()
                    .next()?
                    .parse::<f64>()
                    .ok()
            })
            .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
        Self {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model,
            memory_gib,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_owned(),
            autogroup: std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled")
                .ok()
                .map(|t| t.trim() != "0"),
        }
    }
}

/// The 1-minute load average.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}
