//! SQL statements, recorded through diesel's instrumentation on the connections of the test databases that
//! asked for it (each test its own).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use diesel::connection::{Instrumentation, InstrumentationEvent, set_default_instrumentation};

#[derive(Default)]
struct Record {
    /// (connection, statement) in the order they were started.
    started: Vec<(usize, String)>,
}

static RECORDS: Mutex<Option<HashMap<String, Record>>> = Mutex::new(None);
static CONNECTIONS: AtomicUsize = AtomicUsize::new(0);
static INSTALL: Once = Once::new();

struct Recorder {
    connection: usize,
    url: Option<String>,
}

impl Recorder {
    fn record(&self, write: impl FnOnce(&mut Record)) {
        let Some(url) = &self.url else { return };
        if let Some(record) = RECORDS
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|r| r.get_mut(url))
        {
            write(record);
        }
    }
}

impl Instrumentation for Recorder {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartEstablishConnection { url, .. } => {
                self.url = Some(url.to_owned());
            }
            InstrumentationEvent::StartQuery { query, .. } => {
                let text = query.to_string();
                let sql = text
                    .split(" -- binds:")
                    .next()
                    .unwrap_or(&text)
                    .trim()
                    .to_owned();
                let connection = self.connection;
                self.record(|r| r.started.push((connection, sql)));
            }
            _ => {}
        }
    }
}

/// Records the statements of the connections opened to `url` from now on.
pub fn record_for(url: &str) {
    INSTALL.call_once(|| {
        set_default_instrumentation(|| {
            Some(Box::new(Recorder {
                connection: CONNECTIONS.fetch_add(1, Ordering::Relaxed),
                url: None,
            }))
        })
        .unwrap();
    });
    RECORDS
        .lock()
        .unwrap()
        .get_or_insert_default()
        .insert(url.to_owned(), Record::default());
}

/// The statements started on `url`'s connections since the last call, with their connection.
pub fn take(url: &str) -> Vec<(usize, String)> {
    RECORDS
        .lock()
        .unwrap()
        .as_mut()
        .and_then(|r| r.get_mut(url))
        .map(|r| std::mem::take(&mut r.started))
        .unwrap_or_default()
}

/// The statements, split at each pool checkout (`SELECT 1`), of the checkouts that are part of an order
/// placement (they touch `idempotency_keys`; the background tasks' checkouts do not, or only to purge).
pub fn placement_checkouts(log: &[(usize, String)]) -> Vec<Vec<String>> {
    let mut per_connection: std::collections::BTreeMap<usize, Vec<Vec<String>>> =
        Default::default();
    for (connection, sql) in log {
        let groups = per_connection.entry(*connection).or_default();
        if sql == "SELECT 1" || groups.is_empty() {
            groups.push(Vec::new());
        }
        groups.last_mut().unwrap().push(sql.clone());
    }
    per_connection
        .into_values()
        .flatten()
        .filter(|g| {
            g.iter()
                .any(|s| s.contains("idempotency_keys") && !s.starts_with("DELETE"))
        })
        .collect()
}
