//! What shopd measured of itself during a scenario: its `/metrics` read right before and right after the
//! measured time, and the difference of its histograms. Set beside wrk's figures, it tells time spent inside
//! shopd (from the request head to the response) from time spent before a request reaches it or after it
//! leaves: in the kernel's queues, in the worker's queue of ready connections, waiting for a core, or in the
//! load generator.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;

/// Cumulative bucket counts of every histogram series, by the series without its `le` label.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    buckets: HashMap<String, Vec<(f64, f64)>>,
}

pub async fn scrape(client: &reqwest::Client, port: u16) -> anyhow::Result<Scrape> {
    let text = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .bearer_auth(crate::servers::METRICS_TOKEN)
        .send()
        .await
        .context("reading shopd's /metrics")?
        .error_for_status()?
        .text()
        .await?;
    Ok(Scrape::parse(&text))
}

impl Scrape {
    fn parse(text: &str) -> Self {
        let mut buckets: HashMap<String, Vec<(f64, f64)>> = HashMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Some(le_at) = series.rfind("le=\"") else {
                continue;
            };
            if !series[..le_at].contains("_bucket{") {
                continue;
            }
            let le_text = &series[le_at + 4..];
            let Some(le_text) = le_text.split('"').next() else {
                continue;
            };
            let le = if le_text == "+Inf" {
                f64::INFINITY
            } else {
                match le_text.parse() {
                    Ok(le) => le,
                    Err(_) => continue,
                }
            };
            let Ok(count) = value.parse::<f64>() else {
                continue;
            };
            let key = series[..le_at].trim_end_matches(',').to_owned() + "}";
            buckets.entry(key).or_default().push((le, count));
        }
        for series in buckets.values_mut() {
            series.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        Self { buckets }
    }

    /// The mean of the observations of the label-free histogram `name` since `before`.
    pub fn since(&self, before: &Scrape, prefix: &str) -> Histogram {
        let mut sum: Vec<(f64, f64)> = Vec::new();
        for (key, after) in self.buckets.iter().filter(|(k, _)| k.starts_with(prefix)) {
            let earlier = before.buckets.get(key);
            for (i, (le, count)) in after.iter().enumerate() {
                let was = earlier
                    .and_then(|e| e.get(i))
                    .filter(|(l, _)| l == le)
                    .map_or(0.0, |(_, c)| *c);
                match sum.get_mut(i) {
                    Some(slot) if slot.0 == *le => slot.1 += count - was,
                    _ => sum.push((*le, count - was)),
                }
            }
        }
        Histogram { cumulative: sum }
    }
}

/// A quantile read from histogram buckets.
#[derive(Debug, Clone, Copy)]
pub enum Estimate {
    /// In the first bucket: at most its bound (interpolating from 0 would invent a figure).
    AtMost(Duration),
    /// Interpolated inside its bucket.
    About(Duration),
    /// In the unbounded bucket: over the last bound.
    Over(Duration),
}

/// Cumulative counts by upper bound (seconds), the last one `+Inf`.
#[derive(Debug, Clone)]
pub struct Histogram {
    cumulative: Vec<(f64, f64)>,
}

impl Histogram {
    pub fn count(&self) -> f64 {
        self.cumulative.last().map_or(0.0, |(_, c)| *c)
    }

    /// The `q` quantile (of a histogram of seconds): interpolated linearly inside its bucket, as
    /// Prometheus's `histogram_quantile` does, except in the first and the last (unbounded) buckets, where
    /// only a bound is known. `None` with no observation.
    pub fn quantile(&self, q: f64) -> Option<Estimate> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower: Option<(f64, f64)> = None;
        for &(le, count) in &self.cumulative {
            if count >= rank {
                let secs = Duration::from_secs_f64;
                return Some(match lower {
                    None => Estimate::AtMost(secs(le)),
                    Some((bound, _)) if le.is_infinite() => Estimate::Over(secs(bound)),
                    Some((bound, below)) => {
                        let in_bucket = count - below;
                        let into = if in_bucket > 0.0 {
                            (rank - below) / in_bucket
                        } else {
                            1.0
                        };
                        Estimate::About(secs(bound + (le - bound) * into))
                    }
                });
            }
            lower = Some((le, count));
        }
        None
    }
}

/// shopd's own figures for one scenario.
#[derive(Debug, Clone)]
pub struct Inside {
    /// Requests of the scenario's route that shopd timed.
    pub requests: f64,
    pub p50: Option<Estimate>,
    pub p99: Option<Estimate>,
}

/// The series prefix of a route's latency histogram, from `METHOD /path`.
fn route_prefix(route: &str) -> String {
    let (method, path) = route.split_once(' ').unwrap_or(("GET", route));
    format!("shopd_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{path}\",")
}

/// What shopd measured of `route` (like `GET /v1/orders/{id}`) between the two scrapes.
pub fn between(before: &Scrape, after: &Scrape, route: &str) -> Inside {
    let http = after.since(before, &route_prefix(route));
    Inside {
        requests: http.count(),
        p50: http.quantile(0.50),
        p99: http.quantile(0.99),
    }
}
