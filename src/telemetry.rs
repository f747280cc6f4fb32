//! Logging: readable lines in development, JSON lines in production, filtered by `RUST_LOG`.
//! Secrets and personal values reach no log: they live in `Sensitive` and key types that print `[redacted]`.
//! `metrics`: the Prometheus registry of an instance.

pub mod metrics;

pub use metrics::Metrics;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::Environment;

/// Installs the global subscriber, writing to `writer`. Returns false when one was installed already.
pub fn init<W>(environment: Environment, filter: &str, ansi: bool, writer: W) -> bool
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    match environment {
        Environment::Production => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
            .is_ok(),
        Environment::Development => builder.compact().try_init().is_ok(),
    }
}
