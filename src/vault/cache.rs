//! A short-lived, bounded cache of unwrapped data keys, so a hot read path does not unwrap on every request.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crypto::DataKey;

pub struct KeyCache {
    ttl: Duration,
    capacity: usize,
    entries: Mutex<HashMap<String, (Arc<DataKey>, Instant)>>,
}

impl KeyCache {
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self {
            ttl,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, person_id: &str) -> Option<Arc<DataKey>> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(person_id) {
            Some((key, at)) if at.elapsed() < self.ttl => Some(key.clone()),
            Some(_) => {
                entries.remove(person_id);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, person_id: &str, key: Arc<DataKey>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity && !entries.contains_key(person_id) {
            let ttl = self.ttl;
            entries.retain(|_, (_, at)| at.elapsed() < ttl);
            if entries.len() >= self.capacity {
                // Still full of live keys: drop an arbitrary one; it is unwrapped again when next needed.
                if let Some(victim) = entries.keys().next().cloned() {
                    entries.remove(&victim);
                }
            }
        }
        entries.insert(person_id.to_owned(), (key, Instant::now()));
    }

    pub fn remove(&self, person_id: &str) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(person_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::KeyId;

    fn key() -> Arc<DataKey> {
        Arc::new(DataKey::generate(KeyId::parse("d1").unwrap()).0)
    }

    #[test]
    fn bounded_and_expiring() {
        let cache = KeyCache::new(Duration::from_millis(50), 3);
        for p in ["a", "b", "c", "d"] {
            cache.put(p, key());
        }
        let live = ["a", "b", "c", "d"]
            .iter()
            .filter(|p| cache.get(p).is_some())
            .count();
        assert_eq!(live, 3);
        std::thread::sleep(Duration::from_millis(60));
        assert!(cache.get("d").is_none());
    }
}
