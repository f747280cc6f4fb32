//! The results as Markdown (printed, saved, and optionally written into docs/performance.md) and the rules
//! that say whether each target is met.

use std::fmt::Write as _;
use std::time::Duration;

use crate::Db;
use crate::inside::{Estimate, Inside};
use crate::measure::Measured;
use crate::procfs::{CpuShare, Machine};
use crate::scenarios::{Scenario, Target};

// A dozen rows a run, made once and never moved in a loop: the size of the measured variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    Measured {
        m: Measured,
        /// shopd's resident memory when the measured time began, and its peak during it.
        start_rss_kib: u64,
        peak_rss_kib: u64,
        cpu: CpuShare,
        /// For a scenario measured beside the login loops: what the logins did meanwhile.
        logins_beside: Option<Measured>,
        /// What shopd timed of the scenario's route itself (from its `/metrics`).
        inside: Option<Inside>,
    },
    Failed(String),
}

pub struct Row {
    pub scenario: &'static Scenario,
    pub outcome: Outcome,
}

impl Row {
    pub fn measured(&self) -> Option<&Measured> {
        match &self.outcome {
            Outcome::Measured { m, .. } => Some(m),
            Outcome::Failed(_) => None,
        }
    }
}

/// Everything measured on one database.
pub struct Block {
    pub db: Db,
    pub idle_rss_kib: u64,
    /// The part of it mapped from files (`RssFile`): mostly the binary's own code, from the page cache.
    pub idle_file_kib: u64,
    /// Timed right before this database's (f).
    pub argon2: Option<Argon2Bound>,
    pub rows: Vec<Row>,
}

impl Block {
    pub fn get(&self, id: &str) -> Option<&Measured> {
        self.rows
            .iter()
            .find(|r| r.scenario.id == id)
            .and_then(Row::measured)
    }
}

pub struct Argon2Bound {
    pub hash_time: Duration,
    pub cores: usize,
    /// Hashes a second measured with one hashing thread per core at once (nothing else running).
    pub at_once: f64,
}

impl Argon2Bound {
    pub fn logins_per_second(&self) -> f64 {
        self.cores as f64 / self.hash_time.as_secs_f64()
    }
}

pub struct Report {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub load_start: f64,
    pub load_end: f64,
    pub duration: Duration,
    pub warmup: Duration,
    pub connections: usize,
    pub wrk_threads: usize,
    pub customers: usize,
    pub rust_log: String,
    /// Names of `link/startup.order` the binary defines, of all it holds.
    pub startup_order: Option<(usize, usize)>,
    pub blocks: Vec<Block>,
}

/// The issue's "20 MB", read as 10^6 bytes (19.07 MiB), the stricter of its two readings.
pub const IDLE_RSS_TARGET_MB: f64 = 20.0;

/// Cores used by other work during a measurement above which its figures are flagged.
pub const NOISY_CORES: f64 = 0.25;

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Megabytes of 10^6 bytes, the unit of the issue's memory targets; the tables print MiB.
pub fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

/// A target of `max` MB written with its MiB, the unit the tables print.
fn mb_target(max: f64) -> String {
    format!("{max} MB ({:.1} MiB)", max * 1e6 / 1024.0 / 1024.0)
}

pub fn fmt_rate(r: f64) -> String {
    if r >= 1000.0 {
        let n = r.round() as u64;
        let s = n.to_string();
        let mut out = String::new();
        for (i, ch) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(ch);
        }
        out
    } else if r >= 100.0 {
        format!("{r:.0}")
    } else {
        format!("{r:.1}")
    }
}

pub fn fmt_latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1.0 {
        format!("{ms:.2} ms")
    } else if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn fmt_maybe(estimate: Option<Estimate>) -> String {
    match estimate {
        None => "–".to_owned(),
        Some(Estimate::AtMost(d)) => format!("≤ {}", fmt_latency(d)),
        Some(Estimate::About(d)) => fmt_latency(d),
        Some(Estimate::Over(d)) => format!("> {}", fmt_latency(d)),
    }
}

/// shopd's own figures in one line (for the console).
pub fn fmt_inside(inside: &Inside) -> String {
    let mut text = format!(
        "{} requests, p50 {}, p99 {}",
        fmt_rate(inside.requests),
        fmt_maybe(inside.p50),
        fmt_maybe(inside.p99)
    );
    if let Some(r) = &inside.reads {
        write!(
            text,
            "; order reads: queued p99 {}, batch p99 {}, read p99 {}, {:.1} reads a batch",
            fmt_maybe(r.queued_p99),
            fmt_maybe(r.batch_p99),
            fmt_maybe(r.read_p99),
            r.batch_size.unwrap_or(0.0)
        )
        .unwrap();
    }
    text
}

/// The target's text, and whether it is met (None: nothing to judge, or not measurable).
pub fn judge(block: &Block, scenario: &Scenario, row: &Row) -> (String, Option<bool>) {
    let Outcome::Measured {
        m, peak_rss_kib, ..
    } = &row.outcome
    else {
        return (String::new(), None);
    };
    let baseline = block.get("a").map(Measured::rate);
    match scenario.target {
        Target::None => (String::new(), None),
        Target::ShareOfBaseline {
            sqlite,
            postgres,
            sqlite_p99_ms,
        } => {
            let share = match block.db {
                Db::Sqlite => sqlite,
                Db::Postgres => postgres,
            };
            let p99_bound = sqlite_p99_ms.filter(|_| block.db == Db::Sqlite);
            let mut text = format!("≥ {:.0} % of (a)", share * 100.0);
            if let Some(ms) = p99_bound {
                write!(text, ", p99 ≤ {ms} ms").unwrap();
            }
            let met = baseline.map(|a| {
                m.rate() >= share * a
                    && p99_bound.is_none_or(|ms| m.p99.as_secs_f64() * 1000.0 <= ms)
            });
            (text, met)
        }
        Target::PerSecond { sqlite, postgres } => {
            let want = match block.db {
                Db::Sqlite => sqlite,
                Db::Postgres => postgres,
            };
            if want <= 0.0 {
                return (String::new(), None);
            }
            (format!("≥ {}/s", fmt_rate(want)), Some(m.rate() >= want))
        }
        Target::ShareOfArgon2Bound(share) => match &block.argon2 {
            Some(bound) => {
                let of = m.rate() / bound.logins_per_second();
                (
                    format!(
                        "≥ {:.0} % of {}/s: {:.0} %",
                        share * 100.0,
                        fmt_rate(bound.logins_per_second()),
                        of * 100.0
                    ),
                    Some(of >= share),
                )
            }
            None => (
                format!("≥ {:.0} % of the argon2 bound", share * 100.0),
                None,
            ),
        },
        Target::P99Within { of, factor } => match block.get(of) {
            Some(alone) => (
                format!(
                    "p99 ≤ {factor}× p99 of ({of}) alone ({})",
                    fmt_latency(alone.p99.mul_f64(factor))
                ),
                Some(m.p99 <= alone.p99.mul_f64(factor)),
            ),
            None => (format!("p99 ≤ {factor}× p99 of ({of})"), None),
        },
        Target::PeakRssMb(max) => (
            format!("peak RSS ≤ {}", mb_target(max)),
            Some(mb(*peak_rss_kib) <= max),
        ),
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "",
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let autogroup = match m.autogroup {
            Some(true) => ", session autogroups on (`kernel.sched_autogroup_enabled = 1`)",
            Some(false) => ", session autogroups off (`kernel.sched_autogroup_enabled = 0`)",
            None => "",
        };
        writeln!(
            out,
            "Measured {} on {} cores ({}), {:.0} GiB, Linux {}{autogroup}; load average {:.2} at the start, \
             {:.2} at the end.",
            self.date, m.cores, m.cpu_model, m.memory_gib, m.kernel, self.load_start, self.load_end
        )
        .unwrap();
        writeln!(out).unwrap();
        writeln!(out, "```sh\n{}\n```", self.command).unwrap();
        writeln!(out).unwrap();
        writeln!(
            out,
            "Each scenario: {} s of warm-up, then {} s measured; {} connections (wrk, {} threads) unless \
             named; {} customers seeded through signup; shopd with its defaults (workers = cores, pool of 10, \
             argon2 m=19456 KiB t=2 p=1) and `RUST_LOG={}`.",
            self.warmup.as_secs(),
            self.duration.as_secs(),
            self.connections,
            self.wrk_threads,
            self.customers,
            self.rust_log
        )
        .unwrap();
        for block in &self.blocks {
            if let Some(b) = &block.argon2 {
                writeln!(
                    out,
                    "Right before (f) on {}, one argon2id hash at the production parameters took {} (fastest of \
                     9, release build), so {} cores bound logins at **{}/s**; {} hashes at once (one a core, \
                     nothing else running) did {} hashes/s.",
                    block.db.name(),
                    fmt_latency(b.hash_time),
                    b.cores,
                    fmt_rate(b.logins_per_second()),
                    b.cores,
                    fmt_rate(b.at_once)
                )
                .unwrap();
            }
        }
        writeln!(out).unwrap();
        writeln!(
            out,
            "| scenario | db | req/s | vs (a) | p50 | p99 | peak RSS (rise) | CPU cores: server / postgres / load gen / other | target | |"
        )
        .unwrap();
        writeln!(out, "|---|---|--:|--:|--:|--:|--:|---|---|---|").unwrap();
        let mut notes = Vec::new();
        let mut noisy = false;
        for block in &self.blocks {
            let baseline = block.get("a").map(Measured::rate);
            for row in &block.rows {
                let s = row.scenario;
                let (target, met) = judge(block, s, row);
                let db = if s.id == "a" {
                    format!("({})", block.db.name())
                } else {
                    block.db.name().to_owned()
                };
                match &row.outcome {
                    Outcome::Measured {
                        m,
                        start_rss_kib,
                        peak_rss_kib,
                        cpu,
                        logins_beside,
                        ..
                    } => {
                        let share = baseline
                            .map(|a| format!("{:.1} %", 100.0 * m.rate() / a))
                            .unwrap_or_default();
                        writeln!(
                            out,
                            "| **{}** {} | {} | {} | {} | {} | {} | {:.1} MiB ({:+.1}) | {:.2} / {} / {:.2} / {} | {} | {} |",
                            s.id,
                            s.title,
                            db,
                            if m.failures > 0 {
                                format!("{} ({} failed)", fmt_rate(m.rate()), m.failures)
                            } else {
                                fmt_rate(m.rate())
                            },
                            share,
                            fmt_latency(m.p50),
                            fmt_latency(m.p99),
                            mib(*peak_rss_kib),
                            mib(*peak_rss_kib) - mib(*start_rss_kib),
                            cpu.server,
                            if block.db == Db::Postgres && s.id != "a" {
                                format!("{:.2}", cpu.postgres)
                            } else {
                                "–".to_owned()
                            },
                            cpu.load_generator,
                            if cpu.other > NOISY_CORES {
                                noisy = true;
                                format!("**{:.2}**", cpu.other)
                            } else {
                                format!("{:.2}", cpu.other)
                            },
                            target,
                            verdict(met)
                        )
                        .unwrap();
                        for note in &m.notes {
                            notes.push(format!("({}, {}) {note}", s.id, block.db.name()));
                        }
                        if let Some(l) = logins_beside {
                            notes.push(format!(
                                "({}, {}) meanwhile the logins ran at {}/s, p99 {}",
                                s.id,
                                block.db.name(),
                                fmt_rate(l.rate()),
                                fmt_latency(l.p99)
                            ));
                        }
                    }
                    Outcome::Failed(why) => {
                        writeln!(
                            out,
                            "| **{}** {} | {} | failed | | | | | | {} | **failed** |",
                            s.id, s.title, db, target
                        )
                        .unwrap();
                        notes.push(format!("({}, {}) failed: {why}", s.id, block.db.name()));
                    }
                }
            }
        }
        writeln!(out).unwrap();
        if noisy {
            writeln!(
                out,
                "**Bold** \"other\": more than {NOISY_CORES} core went to other work on the machine during that \
                 measurement; its figures are depressed by it.\n"
            )
            .unwrap();
        }
        self.inside_table(&mut out);
        let idle: Vec<String> = self
            .blocks
            .iter()
            .map(|b| {
                format!(
                    "{} {:.1} MiB ({:.1} MiB of it mapped from files)",
                    b.db.name(),
                    mib(b.idle_rss_kib),
                    mib(b.idle_file_kib)
                )
            })
            .collect();
        let idle_met = self
            .blocks
            .iter()
            .all(|b| mb(b.idle_rss_kib) <= IDLE_RSS_TARGET_MB);
        writeln!(
            out,
            "Idle RSS of shopd one second after it answers `/readyz`: {} (target ≤ {}: {}).",
            idle.join(", "),
            mb_target(IDLE_RSS_TARGET_MB),
            if idle_met { "met" } else { "**missed**" }
        )
        .unwrap();
        match self.startup_order {
            Some((found, of)) => writeln!(
                out,
                "The binary lays out first the functions a start runs: {found} of the {of} names in \
                 `link/startup.order` are in it (`python3 benches/startup_order.py` writes the file anew)."
            ),
            None => writeln!(out, "`link/startup.order` could not be checked against the binary (`nm`)."),
        }
        .unwrap();
        if !notes.is_empty() {
            writeln!(out).unwrap();
            for note in notes {
                writeln!(out, "- {note}").unwrap();
            }
        }
        out
    }
}

impl Report {
    /// What shopd timed itself during the same measurements, beside what wrk saw.
    fn inside_table(&self, out: &mut String) {
        let rows: Vec<(&Block, &Row, &Measured, &Inside)> = self
            .blocks
            .iter()
            .flat_map(|b| b.rows.iter().map(move |r| (b, r)))
            .filter_map(|(b, r)| match &r.outcome {
                Outcome::Measured {
                    m,
                    inside: Some(inside),
                    ..
                } => Some((b, r, m, inside)),
                _ => None,
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        writeln!(
            out,
            "Inside shopd, from its own `/metrics` read before and after each measurement: its latency of \
             the route, from the request head to the response (histogram buckets, interpolated), beside \
             the load generator's; and for the order reads, the wait for their batch (on PostgreSQL, for a \
             reader thread; on SQLite, for the rest of the worker's turn), one batch (pool checkout and \
             statements) and the whole read.\n"
        )
        .unwrap();
        writeln!(
            out,
            "| scenario | db | p99 seen by the load generator | p50 / p99 in shopd | order reads: queued p99 / batch p99 / read p99 / reads a batch |"
        )
        .unwrap();
        writeln!(out, "|---|---|--:|--:|--:|").unwrap();
        for (block, row, m, inside) in rows {
            let reads = inside.reads.as_ref().map_or_else(String::new, |r| {
                format!(
                    "{} / {} / {} / {:.1}",
                    fmt_maybe(r.queued_p99),
                    fmt_maybe(r.batch_p99),
                    fmt_maybe(r.read_p99),
                    r.batch_size.unwrap_or(0.0)
                )
            });
            writeln!(
                out,
                "| **{}** {} | {} | {} | {} / {} | {} |",
                row.scenario.id,
                row.scenario.short,
                block.db.name(),
                fmt_latency(m.p99),
                fmt_maybe(inside.p50),
                fmt_maybe(inside.p99),
                reads
            )
            .unwrap();
        }
        writeln!(out).unwrap();
    }
}

/// Replaces the text between the harness's markers in `doc` (or appends a section with them).
pub fn splice(doc: &str, generated: &str) -> String {
    const BEGIN: &str = "<!-- load-harness:begin -->";
    const END: &str = "<!-- load-harness:end -->";
    let block = format!("{BEGIN}\n{generated}{END}");
    match (doc.find(BEGIN), doc.find(END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &doc[..b], &doc[e + END.len()..])
        }
        _ => format!("{}\n\n## Load harness\n\n{block}\n", doc.trim_end()),
    }
}
