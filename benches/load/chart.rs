//! A hand-written SVG chart: throughput and p99 per scenario, one bar per database, log scales.

use std::fmt::Write as _;

use crate::Db;
use crate::report::{Report, fmt_latency, fmt_rate};
use crate::scenarios::SCENARIOS;

struct Bar {
    db: Db,
    rate: f64,
    p99_ms: f64,
}

struct Group {
    label: String,
    bars: Vec<Bar>,
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn colour(db: Db) -> &'static str {
    match db {
        Db::Sqlite => "#4c72b0",
        Db::Postgres => "#dd8452",
    }
}

/// Decades covering `values` (positive), as exponents `lo..=hi`.
fn decades(values: impl Iterator<Item = f64>) -> (i32, i32) {
    let (mut lo, mut hi) = (f64::MAX, f64::MIN);
    for v in values.filter(|v| *v > 0.0) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if lo > hi {
        return (0, 1);
    }
    // Half the smallest value still gets a visible bar.
    let lo = (lo / 2.0).log10().floor() as i32;
    let hi = (hi.log10().ceil() as i32).max(lo + 1);
    (lo, hi)
}

fn decade_label(exp: i32, unit: &str) -> String {
    let v = 10f64.powi(exp);
    let text = if v >= 1000.0 {
        fmt_rate(v)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v}")
    };
    format!("{text}{unit}")
}

pub fn svg(report: &Report) -> String {
    let mut groups: Vec<Group> = Vec::new();
    for scenario in SCENARIOS {
        let bars: Vec<Bar> = report
            .blocks
            .iter()
            .filter_map(|b| {
                let m = b.get(scenario.id)?;
                Some(Bar {
                    db: b.db,
                    rate: m.rate(),
                    p99_ms: m.p99.as_secs_f64() * 1000.0,
                })
            })
            .collect();
        if !bars.is_empty() {
            let label = format!("({}) {}", scenario.id, scenario.short);
            groups.push(Group { label, bars });
        }
    }

    let (label_w, panel_w, gap, top, bar_h, bar_gap, group_gap) =
        (250.0, 300.0, 80.0, 70.0, 14.0, 2.0, 12.0);
    let rows: f64 = groups.iter().map(|g| g.bars.len() as f64).sum();
    let height = top + rows * (bar_h + bar_gap) + groups.len() as f64 * group_gap + 40.0;
    let width = label_w + 2.0 * panel_w + gap + 60.0;
    let rates = decades(groups.iter().flat_map(|g| g.bars.iter().map(|b| b.rate)));
    let p99s = decades(groups.iter().flat_map(|g| g.bars.iter().map(|b| b.p99_ms)));
    let x_of = |(lo, hi): (i32, i32), x0: f64, v: f64| {
        let t = (v.max(10f64.powi(lo)).log10() - lo as f64) / (hi - lo) as f64;
        x0 + t * panel_w
    };

    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"#
    )
    .unwrap();
    writeln!(
        s,
        r##"<rect width="100%" height="100%" fill="#ffffff"/><text x="10" y="20" font-size="14" font-weight="bold">shopd under load: throughput and p99 per scenario ({} connections, {} s each)</text>"##,
        report.connections,
        report.duration.as_secs()
    )
    .unwrap();
    writeln!(
        s,
        r##"<text x="10" y="38" fill="#555">{} · {} cores · {}</text>"##,
        escape(&report.date),
        report.machine.cores,
        escape(&report.machine.cpu_model)
    )
    .unwrap();
    let mut lx = 10.0;
    for db in [Db::Sqlite, Db::Postgres] {
        if report.blocks.iter().any(|b| b.db == db) {
            writeln!(
                s,
                r#"<rect x="{lx}" y="48" width="12" height="12" fill="{}"/><text x="{}" y="58">{}</text>"#,
                colour(db),
                lx + 16.0,
                db.name()
            )
            .unwrap();
            lx += 90.0;
        }
    }
    for (i, (title, range, unit)) in [
        ("requests/s (log scale)", rates, ""),
        ("p99 latency, ms (log scale)", p99s, ""),
    ]
    .into_iter()
    .enumerate()
    {
        let x0 = label_w + i as f64 * (panel_w + gap);
        writeln!(
            s,
            r#"<text x="{x0}" y="{}" font-weight="bold">{title}</text>"#,
            top - 8.0
        )
        .unwrap();
        for exp in range.0..=range.1 {
            let x = x_of(range, x0, 10f64.powi(exp));
            writeln!(
                s,
                r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                height - 30.0,
                height - 16.0,
                decade_label(exp, unit)
            )
            .unwrap();
        }
    }
    let mut y = top;
    for group in &groups {
        let group_h = group.bars.len() as f64 * (bar_h + bar_gap);
        writeln!(
            s,
            r#"<text x="10" y="{}">{}</text>"#,
            y + group_h / 2.0 + 4.0,
            escape(&group.label)
        )
        .unwrap();
        for bar in &group.bars {
            for (i, (value, range, text)) in [
                (bar.rate, rates, fmt_rate(bar.rate)),
                (
                    bar.p99_ms,
                    p99s,
                    fmt_latency(std::time::Duration::from_secs_f64(bar.p99_ms / 1000.0)),
                ),
            ]
            .into_iter()
            .enumerate()
            {
                let x0 = label_w + i as f64 * (panel_w + gap);
                let w = (x_of(range, x0, value) - x0).max(1.0);
                writeln!(
                    s,
                    r#"<rect x="{x0}" y="{y}" width="{w:.1}" height="{bar_h}" fill="{}"/><text x="{:.1}" y="{}" font-size="10">{}</text>"#,
                    colour(bar.db),
                    x0 + w + 3.0,
                    y + bar_h - 3.0,
                    escape(&text)
                )
                .unwrap();
            }
            y += bar_h + bar_gap;
        }
        y += group_gap;
    }
    s.push_str("</svg>\n");
    s
}
