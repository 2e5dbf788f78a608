//! Per-replica connection caps: per client address (checked before the
//! upgrade, so a connection storm costs no handshake) and per principal
//! (checked after authentication). Guards give the slot back on drop.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug)]
struct Counts<K> {
    limit: usize,
    open: Mutex<HashMap<K, usize>>,
}

impl<K: Hash + Eq + Clone> Counts<K> {
    fn acquire(self: &Arc<Self>, key: &K) -> Option<Slot<K>> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
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
        let mut open = self.counts.open.lock().unwrap_or_else(|e| e.into_inner());
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
}

impl ConnectionLimits {
    pub fn new(per_ip: usize, per_principal: usize) -> Self {
        Self {
            per_ip: Arc::new(Counts {
                limit: per_ip,
                open: Mutex::new(HashMap::new()),
            }),
            per_principal: Arc::new(Counts {
                limit: per_principal,
                open: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn ip(&self, ip: IpAddr) -> Option<Slot<IpAddr>> {
        self.per_ip.acquire(&ip)
    }

    pub fn principal(&self, sub: &str) -> Option<Slot<String>> {
        self.per_principal.acquire(&sub.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_releases() {
        let l = ConnectionLimits::new(1, 2);
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
        assert!(ConnectionLimits::new(0, 0).principal("x").is_some());
    }
}
