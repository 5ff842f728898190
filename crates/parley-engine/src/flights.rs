//! Expensive answers shared by the requests that ask at once (a campaign's plan walks its
//! whole audience; its statistics aggregate every message it made). Requests take turns on a
//! lock (per application for plans, per campaign for statistics), and a request that waited
//! gets the answer of its key whose making started after it arrived: an answer made from data
//! at least as new as the request, never an older one. So a burst of N requests costs at
//! most two makings (the one under way when it came, and one for the rest), not N at once,
//! and a request after a change sees the change.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Answers are kept this long for the requests that waited on them.
const KEPT: Duration = Duration::from_secs(60);

/// Past this many turn locks, those nobody holds or waits for are forgotten.
const TURNS_KEPT: usize = 1_024;

pub(crate) struct Flights<K, V> {
    turns: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    made: std::sync::Mutex<HashMap<K, (Instant, V)>>,
    makings: AtomicU64,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Flights {
            turns: std::sync::Mutex::default(),
            made: std::sync::Mutex::new(HashMap::new()),
            makings: AtomicU64::new(0),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Flights<K, V> {
    /// The answer for `key` (the key names the tenant: only its own requests share it),
    /// taking turns with the other requests of `turn`.
    pub(crate) async fn get<E, Fut>(
        &self,
        turn: &str,
        key: K,
        make: impl FnOnce() -> Fut,
    ) -> Result<V, E>
    where
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        let arrived = Instant::now();
        let lock = self.turn(turn);
        let _turn = lock.lock().await;
        if let Some(v) = self.made_since(&key, arrived) {
            return Ok(v);
        }
        let started = Instant::now();
        self.makings.fetch_add(1, Ordering::Relaxed);
        let v = make().await?;
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        made.retain(|_, (at, _)| at.elapsed() < KEPT);
        made.insert(key, (started, v.clone()));
        Ok(v)
    }

    /// How many answers were made (not shared) since the node started.
    pub(crate) fn makings(&self) -> u64 {
        self.makings.load(Ordering::Relaxed)
    }

    fn turn(&self, turn: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
        if turns.len() > TURNS_KEPT {
            turns.retain(|_, t| Arc::strong_count(t) > 1);
        }
        turns.entry(turn.to_owned()).or_default().clone()
    }

    fn made_since(&self, key: &K, arrived: Instant) -> Option<V> {
        let made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        made.get(key)
            .filter(|(started, _)| *started >= arrived)
            .map(|(_, v)| v.clone())
    }
}
