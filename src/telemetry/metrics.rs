//! The Prometheus metrics of one application instance: HTTP requests by route pattern and status, their
//! latency, database pool use, and the security counters. One `Metrics` per `Application` (in `AppState`),
//! never a global, so that each test sees its own numbers. Features increment it through the methods below;
//! label values are fixed words from the code, never from a request, so no client can grow the series.

use std::sync::Arc;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Reasons an app attestation fails, as labels (kept in step with `crypto::attestation::Failure`).
fn attestation_reasons() -> impl Iterator<Item = &'static str> {
    crate::crypto::attestation::Failure::ALL
        .into_iter()
        .map(|f| f.reason())
}

/// Bounds of the request latency histogram, in seconds: fine from 0.1 ms to 1 s, where the figures of
/// `docs/performance.md` lie, so that a quantile read from the buckets is within a fraction of its value.
const LATENCY_BUCKETS: [f64; 23] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05,
    0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
];

struct Inner {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    attestation_checks: IntCounterVec,
    attestation_failures: IntCounterVec,
    webhook_signature_failures: IntCounterVec,
    wrong_codes: IntCounterVec,
    refresh_token_reuse: IntCounterVec,
    login_throttled: IntCounterVec,
    platform_sign_ins: IntCounterVec,
    passkey_sign_ins: IntCounterVec,
    rate_limited: IntCounterVec,
    tls_reloads: IntCounterVec,
    outbox: IntCounterVec,
    session_checks_in_database: IntCounter,
    db_connections: IntGaugeVec,
    db_pool_max: IntGauge,
}

/// One counter series, as the console shows it.
#[derive(Debug, Clone)]
pub struct Figure {
    pub name: String,
    pub labels: String,
    pub value: u64,
}

/// Cheap to clone: every clone counts into the same registry.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `metric`, registered in `registry`.
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("each metric is registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    registered(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric"),
    )
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("shopd".into()), None).expect("a valid prefix");
        let http_requests = counter(
            &registry,
            "http_requests_total",
            "HTTP requests answered, by method, route pattern and status.",
            &["method", "route", "status"],
        );
        let http_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "http_request_duration_seconds",
                    "Time from the request head to the response, by method, route pattern and status.",
                )
                .buckets(LATENCY_BUCKETS.to_vec()),
                &["method", "route", "status"],
            )
            .expect("a valid metric"),
        );
        let attestation_checks = counter(
            &registry,
            "attestation_checks_total",
            "App attestation checks of customer requests, by result (passed, failed).",
            &["result"],
        );
        let attestation_failures = counter(
            &registry,
            "attestation_failures_total",
            "Failed app attestation checks, by reason (counted in report and enforce mode).",
            &["reason"],
        );
        let webhook_signature_failures = counter(
            &registry,
            "webhook_signature_failures_total",
            "Payment webhooks refused for a missing or wrong signature or a stale timestamp, by provider.",
            &["provider"],
        );
        let wrong_codes = counter(
            &registry,
            "otp_wrong_codes_total",
            "Wrong one-time codes entered, by purpose (signup, password_reset, phone, login).",
            &["purpose"],
        );
        let platform_sign_ins = counter(
            &registry,
            "platform_sign_ins_total",
            "Sign-ins with a platform's ID token, by provider (apple, google) and outcome (signed_in, created, \
             refused).",
            &["provider", "outcome"],
        );
        let passkey_sign_ins = counter(
            &registry,
            "passkey_sign_ins_total",
            "Sign-ins with a passkey, by outcome (signed_in, refused).",
            &["outcome"],
        );
        let refresh_token_reuse = counter(
            &registry,
            "refresh_token_reuse_total",
            "Spent refresh tokens presented again (the session was ended), by audience.",
            &["audience"],
        );
        let login_throttled = counter(
            &registry,
            "login_throttled_total",
            "Logins refused by throttling, by what was throttled (address, account).",
            &["by"],
        );
        let rate_limited = counter(
            &registry,
            "rate_limited_total",
            "Requests refused with 429 by a rate limit: per account, or per address by route class.",
            &["class"],
        );
        let tls_reloads = counter(
            &registry,
            "tls_certificate_reloads_total",
            "Attempts to take up a changed TLS certificate, by result (loaded, failed).",
            &["result"],
        );
        let outbox = counter(
            &registry,
            "outbox_messages_total",
            "E-mail outbox of this instance, by outcome (sent, dropped, failed_attempts, failed).",
            &["outcome"],
        );
        let session_checks_in_database = registered(
            &registry,
            IntCounter::new(
                "session_checks_in_database_total",
                "Access tokens whose session was looked up in the database because the ended-session \
                 view was stale (older than 900 ms: its re-reads are failing or slow).",
            )
            .expect("a valid metric"),
        );
        let db_connections = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "db_pool_connections",
                    "Database pool connections by state (idle, in_use), at the time of the scrape.",
                ),
                &["state"],
            )
            .expect("a valid metric"),
        );
        let db_pool_max = registered(
            &registry,
            IntGauge::new("db_pool_max_connections", "Largest size of the pool.")
                .expect("a valid metric"),
        );

        // Known label values start at 0, so dashboards and alerts see the series before the first event.
        attestation_checks.with_label_values(&["passed"]);
        attestation_checks.with_label_values(&["failed"]);
        for reason in attestation_reasons() {
            attestation_failures.with_label_values(&[reason]);
        }
        for provider in ["stripe", "standard"] {
            webhook_signature_failures.with_label_values(&[provider]);
        }
        for provider in ["apple", "google"] {
            for outcome in ["signed_in", "created", "refused"] {
                platform_sign_ins.with_label_values(&[provider, outcome]);
            }
        }
        for purpose in [
            crate::auth::SIGNUP,
            crate::auth::PASSWORD_RESET,
            crate::auth::PHONE,
        ] {
            wrong_codes.with_label_values(&[purpose]);
        }
        for audience in ["customer", "staff"] {
            refresh_token_reuse.with_label_values(&[audience]);
        }
        for by in ["address", "account"] {
            login_throttled.with_label_values(&[by]);
        }

        Self(Arc::new(Inner {
            registry,
            http_requests,
            http_duration,
            attestation_checks,
            attestation_failures,
            webhook_signature_failures,
            wrong_codes,
            refresh_token_reuse,
            login_throttled,
            platform_sign_ins,
            passkey_sign_ins,
            rate_limited,
            tls_reloads,
            outbox,
            session_checks_in_database,
            db_connections,
            db_pool_max,
        }))
    }

    /// One answered request: `route` is the matched pattern (`/v1/me`, `unmatched`), never the raw path. A
    /// method outside the standard ones counts as `other`, so that made-up methods cannot grow the series.
    pub fn http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" => method,
            _ => "other",
        };
        let status = status.to_string();
        let labels = [method, route, status.as_str()];
        self.0.http_requests.with_label_values(&labels).inc();
        self.0
            .http_duration
            .with_label_values(&labels)
            .observe(seconds);
    }

    /// A session checked in the database: the ended-session view was stale (`auth::revocations`).
    pub fn session_checked_in_database(&self) {
        self.0.session_checks_in_database.inc();
    }

    pub fn attestation_passed(&self) {
        self.0
            .attestation_checks
            .with_label_values(&["passed"])
            .inc();
    }

    pub fn attestation_failed(&self, reason: &'static str) {
        self.0
            .attestation_checks
            .with_label_values(&["failed"])
            .inc();
        self.0
            .attestation_failures
            .with_label_values(&[reason])
            .inc();
    }

    /// For the payment webhooks: a request refused for its signature or timestamp.
    pub fn webhook_signature_failure(&self, provider: &'static str) {
        self.0
            .webhook_signature_failures
            .with_label_values(&[provider])
            .inc();
    }

    pub fn wrong_code(&self, purpose: &'static str) {
        self.0.wrong_codes.with_label_values(&[purpose]).inc();
    }

    /// `audience`: `customer` or `staff`.
    pub fn refresh_token_reuse(&self, audience: &'static str) {
        self.0
            .refresh_token_reuse
            .with_label_values(&[audience])
            .inc();
    }

    /// `by`: `address` (too many logins from one client address) or `account` (back-off after failures).
    pub fn login_throttled(&self, by: &'static str) {
        self.0.login_throttled.with_label_values(&[by]).inc();
    }

    /// `provider`: `apple` or `google`; `outcome`: `signed_in`, `created` or `refused`.
    pub fn platform_sign_in(&self, provider: &'static str, outcome: &'static str) {
        self.0
            .platform_sign_ins
            .with_label_values(&[provider, outcome])
            .inc();
    }

    /// `outcome`: `signed_in` or `refused`.
    pub fn passkey_sign_in(&self, outcome: &'static str) {
        self.0.passkey_sign_ins.with_label_values(&[outcome]).inc();
    }

    pub fn rate_limited(&self, class: &'static str) {
        self.0.rate_limited.with_label_values(&[class]).inc();
    }

    pub fn tls_reload(&self, loaded: bool) {
        let result = if loaded { "loaded" } else { "failed" };
        self.0.tls_reloads.with_label_values(&[result]).inc();
    }

    /// The outbox sender's own counters (`notify::sender::OutboxMetrics::snapshot`), brought up to date at
    /// scrape time.
    pub fn outbox(&self, snapshot: &[(&'static str, u64)]) {
        for (outcome, total) in snapshot {
            let counter = self.0.outbox.with_label_values(&[*outcome]);
            counter.inc_by(total.saturating_sub(counter.get()));
        }
    }

    /// The pool's state at scrape time (r2d2 `state()`).
    pub fn db_pool(&self, connections: u32, idle: u32, max: u32) {
        let idle = i64::from(idle.min(connections));
        self.0.db_connections.with_label_values(&["idle"]).set(idle);
        self.0
            .db_connections
            .with_label_values(&["in_use"])
            .set(i64::from(connections) - idle);
        self.0.db_pool_max.set(i64::from(max));
    }

    /// Everything, in the Prometheus text format.
    /// The counters named (without the `shopd_` prefix), each series with its labels and value: what the
    /// console's operations page shows of `/metrics`.
    pub fn counters(&self, names: &[&str]) -> Vec<Figure> {
        let mut out = Vec::new();
        for family in self.0.registry.gather() {
            let name = family.name().trim_start_matches("shopd_");
            if !names.contains(&name) {
                continue;
            }
            for metric in family.get_metric() {
                let labels = metric
                    .get_label()
                    .iter()
                    .map(|l| format!("{}={}", l.name(), l.value()))
                    .collect::<Vec<_>>()
                    .join(", ");
                out.push(Figure {
                    name: name.to_owned(),
                    labels,
                    value: metric.get_counter().get_value() as u64,
                });
            }
        }
        out
    }

    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.0.registry.gather(), &mut buffer)
            .expect("metrics encode");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_in_the_text_format() {
        let m = Metrics::new();
        m.http_request("GET", "/v1/me", 200, 0.003);
        m.http_request("BREW", "unmatched", 405, 0.001);
        m.http_request("BREW2", "unmatched", 405, 0.001);
        m.attestation_failed("bad_alg");
        m.db_pool(4, 3, 10);
        let text = m.render();
        assert!(
            text.contains(
                r#"shopd_http_requests_total{method="GET",route="/v1/me",status="200"} 1"#
            )
        );
        assert!(text.contains(
            r#"shopd_http_requests_total{method="other",route="unmatched",status="405"} 2"#
        ));
        assert!(text.contains(r#"shopd_attestation_failures_total{reason="bad_alg"} 1"#));
        assert!(text.contains(r#"shopd_attestation_failures_total{reason="missing"} 0"#));
        assert!(text.contains(r#"shopd_db_pool_connections{state="in_use"} 1"#));
        assert!(text.contains("# TYPE shopd_http_request_duration_seconds histogram"));
    }
}
