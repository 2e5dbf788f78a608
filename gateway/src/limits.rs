//! Per-replica connection caps: per client address (checked before the
//! upgrade, so a connection storm costs no handshake) and per principal
//! (checked after authentication). Guards give the slot back on drop.

use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;

use foldhash::HashMap;
use parking_lot::Mutex;

#[derive(Debug)]
struct Counts<K> {
    limit: usize,
    open: Mutex<HashMap<K, usize>>,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn acquire(self: &Arc<Self>, key: &K) -> Option<Slot<K>> {
        let mut open = self.open.lock();
        let n = open.entry(key.clone()).or_insert(0);
        if self.limit > 0 && *n >= self.limit {
            return None;
        }
        *n += 1;
        Some(Slot {
            counts: Arc::clone(self),
            key: key.clone(),
        })
    }
}

/// One open connection counted against a cap.
#[derive(Debug)]
pub struct Slot<K: Hash + Eq + Clone> {
    counts: Arc<Counts<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut open = self.counts.open.lock();
        if let Some(n) = open.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// Connection caps of one replica; 0 means unlimited.
#[derive(Debug)]
pub struct ConnectionLimits {
    per_ip: Arc<Counts<IpAddr>>,
    per_principal: Arc<Counts<String>>,
    /// New connections per second per address (a token bucket each).
    connect_rate: u32,
    connects: Mutex<HashMap<IpAddr, MessageBudget>>,
}

/// Addresses remembered for the connect rate before idle ones are pruned.
const MAX_TRACKED_ADDRESSES: usize = 10_000;

impl ConnectionLimits {
    pub fn new(per_ip: usize, per_principal: usize, connect_rate: u32) -> Self {
        Self {
            per_ip: Arc::new(Counts {
                limit: per_ip,
                open: Mutex::new(HashMap::default()),
            }),
            per_principal: Arc::new(Counts {
                limit: per_principal,
                open: Mutex::new(HashMap::default()),
            }),
            connect_rate,
            connects: Mutex::new(HashMap::default()),
        }
    }

    /// Whether `ip` may open another connection now (bursts of up to twice the rate).
    pub fn connect_allowed(&self, ip: IpAddr) -> bool {
        if self.connect_rate == 0 {
            return true;
        }
        let now = tokio::time::Instant::now();
        let mut connects = self.connects.lock();
        if connects.len() >= MAX_TRACKED_ADDRESSES && !connects.contains_key(&ip) {
            connects.retain(|_, b| {
                now.saturating_duration_since(b.last) < std::time::Duration::from_secs(10)
            });
        }
        let rate = self.connect_rate;
        connects
            .entry(ip)
            .or_insert_with(|| MessageBudget::new(rate, rate.saturating_mul(2)))
            .take(now)
    }

    pub fn ip(&self, ip: IpAddr) -> Option<Slot<IpAddr>> {
        self.per_ip.acquire(&ip)
    }

    pub fn principal(&self, sub: &str) -> Option<Slot<String>> {
        self.per_principal.acquire(&sub.to_owned())
    }
}

/// A per-connection token bucket for client messages: `rate` per second
/// on average, bursts of up to `burst`. A few bytes and no timer.
#[derive(Debug)]
pub struct MessageBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl MessageBudget {
    /// `rate` 0 means unlimited.
    pub fn new(rate: u32, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate: f64::from(rate),
            burst,
            tokens: burst,
            last: tokio::time::Instant::now(),
        }
    }

    /// Spend one message; false when the client is over its budget.
    pub fn take(&mut self, now: tokio::time::Instant) -> bool {
        if self.rate == 0.0 {
            return true;
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_allows_bursts_then_the_rate() {
        let t0 = tokio::time::Instant::now();
        let mut b = MessageBudget::new(10, 5);
        assert!((0..5).all(|_| b.take(t0)));
        assert!(!b.take(t0), "burst spent");
        assert!(
            b.take(t0 + std::time::Duration::from_millis(100)),
            "one refilled after 100 ms at 10/s"
        );
        assert!(!b.take(t0 + std::time::Duration::from_millis(100)));
        let mut free = MessageBudget::new(0, 0);
        assert!((0..1000).all(|_| free.take(t0)));
    }

    #[test]
    fn caps_and_releases() {
        let l = ConnectionLimits::new(1, 2, 0);
        let ip = IpAddr::from([127, 0, 0, 1]);
        let first = l.ip(ip);
        assert!(first.is_some());
        assert!(l.ip(ip).is_none());
        drop(first);
        assert!(l.ip(ip).is_some());
        let (a, b) = (l.principal("x"), l.principal("x"));
        assert!(
            a.is_some() && b.is_some() && l.principal("x").is_none() && l.principal("y").is_some()
        );
        assert!(ConnectionLimits::new(0, 0, 0).principal("x").is_some());
        let rate = ConnectionLimits::new(0, 0, 1);
        assert!(
            rate.connect_allowed(ip) && rate.connect_allowed(ip) && !rate.connect_allowed(ip),
            "burst of 2 at 1/s"
        );
    }
}
