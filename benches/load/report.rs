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
    pub blocks: Vec<Block>,
}

/// Idle resident memory, issue 27's bound ("well under Vendure's 223 MB").
pub const IDLE_RSS_TARGET_MIB: f64 = 30.0;

/// Cores used by other work during a measurement above which its figures are flagged.
pub const NOISY_CORES: f64 = 0.25;

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
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
    format!(
        "{} requests, p50 {}, p99 {}",
        fmt_rate(inside.requests),
        fmt_maybe(inside.p50),
        fmt_maybe(inside.p99)
    )
}

/// The target's text, and whether it is met (None: nothing to judge, or not measurable).
pub fn judge(block: &Block, scenario: &Scenario, row: &Row) -> (String, Option<bool>) {
    let Outcome::Measured { m, .. } = &row.outcome else {
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
        Target::ShareOfHashesAtOnce(share) => match &block.argon2 {
            Some(bound) => {
                let of = m.rate() / bound.at_once;
                (
                    format!(
                        "≥ {:.0} % of {}/s: {:.0} %",
                        share * 100.0,
                        fmt_rate(bound.at_once),
                        of * 100.0
                    ),
                    Some(of >= share),
                )
            }
            None => (
                format!("≥ {:.0} % of the hashes at once", share * 100.0),
                None,
            ),
        },
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
            .all(|b| mib(b.idle_rss_kib) <= IDLE_RSS_TARGET_MIB);
        writeln!(
            out,
            "Idle RSS of shopd one second after it answers `/readyz`: {} (target ≤ {IDLE_RSS_TARGET_MIB} MiB: {}).",
            idle.join(", "),
            if idle_met { "met" } else { "**missed**" }
        )
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
             the load generator's.\n"
        )
        .unwrap();
        writeln!(
            out,
            "| scenario | db | p99 seen by the load generator | p50 / p99 in shopd |"
        )
        .unwrap();
        writeln!(out, "|---|---|--:|--:|").unwrap();
        for (block, row, m, inside) in rows {
            writeln!(
                out,
                "| **{}** {} | {} | {} | {} / {} |",
                row.scenario.id,
                row.scenario.short,
                block.db.name(),
                fmt_latency(m.p99),
                fmt_maybe(inside.p50),
                fmt_maybe(inside.p99),
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
