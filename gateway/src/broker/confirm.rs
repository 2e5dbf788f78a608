//! Subscription confirmations in groups. A subscribe is live once a PING
//! written after it on the same connection is answered, and one PING
//! answers for every subscribe written before it. Under a connect storm,
//! thousands of subscribes a second would each cost a Redis round trip of
//! their own; here the first caller pings for itself, callers arriving
//! meanwhile wait, and when that PING is answered one of them pings once
//! for all of them (group commit).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// What a waiting caller is told: its group's result, or that it pings for
/// the next group.
enum Turn {
    Done(Result<(), String>),
    Lead,
}

#[derive(Default)]
struct Group {
    /// A PING for this connection is being written or awaited.
    running: bool,
    /// Callers whose subscribe was written after that PING was taken: the
    /// next PING answers for them.
    waiting: Vec<oneshot::Sender<Turn>>,
}

/// Confirmation groups, one per connection (`K`: the shard, or `()`).
pub(super) struct Confirmations<K> {
    groups: Mutex<HashMap<K, Group>>,
}

impl<K: Hash + Eq + Clone> Default for Confirmations<K> {
    fn default() -> Self {
        Self {
            groups: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> Confirmations<K> {
    /// Confirm a subscribe already written on connection `key`: resolves
    /// with the result of a `ping` started after this call, run by this
    /// caller or by another caller of the same group.
    pub(super) async fn confirm<F, Fut>(&self, key: K, ping: F) -> Result<(), String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let wait = {
            let mut groups = self.groups.lock();
            let group = groups.entry(key.clone()).or_default();
            match group.running {
                true => {
                    let (tx, rx) = oneshot::channel();
                    group.waiting.push(tx);
                    Some(rx)
                }
                false => {
                    group.running = true;
                    None
                }
            }
        };
        if let Some(rx) = wait {
            let mut waiting = Waiting {
                confirmations: self,
                key: key.clone(),
                rx,
                answered: false,
            };
            let turn = (&mut waiting.rx).await;
            waiting.answered = true;
            match turn {
                Ok(Turn::Done(result)) => return result,
                Ok(Turn::Lead) => {}
                // Senders are dropped only after being answered.
                Err(_) => return Err("subscription confirmation abandoned".to_owned()),
            }
        }
        // Everyone waiting now wrote their subscribe before this PING.
        let batch = {
            let mut groups = self.groups.lock();
            std::mem::take(&mut groups.entry(key.clone()).or_default().waiting)
        };
        let mut lead = Lead {
            confirmations: self,
            key,
            batch,
        };
        let result = ping().await;
        for tx in lead.batch.drain(..) {
            let _ = tx.send(Turn::Done(result.clone()));
        }
        result
    }

    /// Hand the next PING to a caller still waiting, or stand down.
    fn pass_lead(&self, key: &K, unconfirmed: Vec<oneshot::Sender<Turn>>) {
        let mut groups = self.groups.lock();
        let Some(group) = groups.get_mut(key) else {
            return;
        };
        group.waiting.extend(unconfirmed);
        while let Some(next) = group.waiting.pop() {
            // A caller that gave up waiting has dropped its receiver.
            if next.send(Turn::Lead).is_ok() {
                return;
            }
        }
        groups.remove(key);
    }
}

/// The caller running a group's PING. However it ends (answered, failed,
/// or the caller's future dropped mid-PING), the lead passes on: callers of
/// an unanswered batch wait for the next PING instead of forever.
struct Lead<'a, K: Hash + Eq + Clone> {
    confirmations: &'a Confirmations<K>,
    key: K,
    batch: Vec<oneshot::Sender<Turn>>,
}

impl<K: Hash + Eq + Clone> Drop for Lead<'_, K> {
    fn drop(&mut self) {
        let unconfirmed = std::mem::take(&mut self.batch);
        self.confirmations.pass_lead(&self.key, unconfirmed);
    }
}

/// A caller waiting for its group. Dropped after the lead was sent to it
/// but before it read it, it passes the lead on.
struct Waiting<'a, K: Hash + Eq + Clone> {
    confirmations: &'a Confirmations<K>,
    key: K,
    rx: oneshot::Receiver<Turn>,
    answered: bool,
}

impl<K: Hash + Eq + Clone> Drop for Waiting<'_, K> {
    fn drop(&mut self) {
        if !self.answered && matches!(self.rx.try_recv(), Ok(Turn::Lead)) {
            self.confirmations.pass_lead(&self.key, Vec::new());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::Confirmations;

    /// A slow PING and many callers: every caller is confirmed, by far
    /// fewer PINGs than callers, and every PING starts after the calls it
    /// answers for.
    #[tokio::test]
    async fn callers_arriving_during_a_ping_share_the_next_one() {
        let confirmations = Arc::new(Confirmations::<()>::default());
        let pings = Arc::new(AtomicUsize::new(0));
        let calls = (0..100).map(|_| {
            let (confirmations, pings) = (Arc::clone(&confirmations), Arc::clone(&pings));
            async move {
                confirmations
                    .confirm((), || async {
                        pings.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(())
                    })
                    .await
            }
        });
        let results = futures_util::future::join_all(calls).await;
        assert!(results.iter().all(Result::is_ok));
        let pings = pings.load(Ordering::SeqCst);
        assert!((1..=3).contains(&pings), "{pings} pings for 100 callers");
        assert!(confirmations.groups.lock().is_empty(), "group left running");
    }

    /// A failed PING fails exactly the callers it answered for; the next
    /// group pings again.
    #[tokio::test]
    async fn a_failed_ping_fails_its_group_only() {
        let confirmations = Confirmations::<u8>::default();
        let failed = confirmations
            .confirm(1, || async { Err("down".to_owned()) })
            .await;
        assert_eq!(failed, Err("down".to_owned()));
        let ok = confirmations.confirm(1, || async { Ok(()) }).await;
        assert_eq!(ok, Ok(()));
    }

    /// The leader's future dropped mid-PING: the caller waiting behind it
    /// takes the lead and is confirmed by a PING of its own.
    #[tokio::test]
    async fn a_dropped_leader_hands_its_group_on() {
        let confirmations = Arc::new(Confirmations::<()>::default());
        let leader = {
            let confirmations = Arc::clone(&confirmations);
            tokio::spawn(async move {
                confirmations
                    .confirm((), std::future::pending::<Result<(), String>>)
                    .await
            })
        };
        // The leader holds the group once its PING is running.
        while !confirmations
            .groups
            .lock()
            .get(&())
            .is_some_and(|g| g.running)
        {
            tokio::task::yield_now().await;
        }
        let follower = {
            let confirmations = Arc::clone(&confirmations);
            tokio::spawn(async move { confirmations.confirm((), || async { Ok(()) }).await })
        };
        while confirmations
            .groups
            .lock()
            .get(&())
            .is_none_or(|g| g.waiting.is_empty())
        {
            tokio::task::yield_now().await;
        }
        leader.abort();
        let result = tokio::time::timeout(Duration::from_secs(5), follower)
            .await
            .expect("the follower was confirmed")
            .expect("follower task");
        assert_eq!(result, Ok(()));
    }
}
