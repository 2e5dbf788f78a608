//! A Redis client that is replaced when it stops answering (feature
//! `redis`).
//!
//! Publishing clients run with fred's command attempts at one, so that fred
//! never resends a publish as a first attempt (see [`crate::redis_retry`]).
//! Seen on Redis Cluster: a redirect (ASK or MOVED) that meets that limit
//! fails with "Max attempts reached", and the clustered client can then
//! time out every later command although the cluster is healthy. A retry
//! through the same client would spend its whole window waiting. So after
//! two transient failures in a row (whichever calls they came from) a
//! fresh client is built in the background, with the same settings and
//! seeded with every primary the old one knew; later calls use it, calls
//! already running finish on the old one, which is closed after a while.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use fred::interfaces::{ClientLike, ClusterInterface};
use fred::prelude::{Builder, Client};
use fred::types::config::{Server, ServerConfig};

/// How long an old client stays open for the calls still running on it.
const RETIRE_AFTER: Duration = Duration::from_secs(30);
/// Transient failures in a row that replace the client.
const FAILURES_TO_REPLACE: u32 = 2;
/// Longest wait for a replacement client to connect.
const CONNECT_WITHIN: Duration = Duration::from_secs(5);
/// Replacements are tried at most this often.
const REPLACE_AT_MOST_EVERY: Duration = Duration::from_secs(10);

/// The current client, shared by clones.
#[derive(Clone)]
pub struct RedisLink(Arc<Shared>);

impl std::fmt::Debug for RedisLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLink")
            .field("generation", &self.generation())
            .finish_non_exhaustive()
    }
}

struct Shared {
    current: RwLock<Current>,
    /// One replacement at a time: publishes failing together must not each
    /// open a client.
    replacing: AtomicBool,
    /// When the last replacement was tried: at most one per
    /// [`REPLACE_AT_MOST_EVERY`], however long an outage lasts.
    last_try: std::sync::Mutex<Option<Instant>>,
    /// Transient failures in a row, over every call.
    failures: AtomicU32,
}

#[derive(Clone)]
struct Current {
    client: Client,
    generation: u64,
}

impl RedisLink {
    /// Wrap a built (not necessarily connected) client.
    pub fn new(client: Client) -> Self {
        Self(Arc::new(Shared {
            current: RwLock::new(Current {
                client,
                generation: 0,
            }),
            replacing: AtomicBool::new(false),
            last_try: std::sync::Mutex::new(None),
            failures: AtomicU32::new(0),
        }))
    }

    fn current(&self) -> Current {
        // The lock only ever holds a whole `Current`: a poisoned one is
        // still consistent.
        match self.0.current.read() {
            Ok(c) => c.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The client to use now.
    pub fn client(&self) -> Client {
        self.current().client
    }

    /// Which client [`RedisLink::client`] returns: the caller passes it
    /// back to [`RedisLink::failed`] so a client is replaced once.
    pub fn generation(&self) -> u64 {
        self.current().generation
    }

    /// A call on the current client succeeded.
    pub fn succeeded(&self) {
        self.0.failures.store(0, Ordering::Relaxed);
    }

    /// A call on client `seen` failed transiently: from the second such
    /// failure in a row, replace it in the background.
    pub fn failed(&self, seen: u64) {
        let failures = self.0.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < FAILURES_TO_REPLACE || !self.may_try_now() {
            return;
        }
        if self
            .0
            .replacing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        let link = self.clone();
        tokio::spawn(async move {
            link.replace(seen).await;
            link.0.replacing.store(false, Ordering::Release);
        });
    }

    fn may_try_now(&self) -> bool {
        let mut last = match self.0.last_try.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.is_some_and(|at| at.elapsed() < REPLACE_AT_MOST_EVERY) {
            return false;
        }
        *last = Some(Instant::now());
        true
    }

    /// Replace client `seen` by a fresh, connected one, unless it was
    /// already replaced or the new one cannot connect in time (then the old
    /// one stays and the next call says what fails).
    async fn replace(&self, seen: u64) {
        let old = self.current();
        if old.generation != seen {
            return;
        }
        let Ok(fresh) = reseeded(&old.client) else {
            return;
        };
        match tokio::time::timeout(CONNECT_WITHIN, fresh.init()).await {
            Ok(Ok(_)) => {}
            _ => {
                let _ = fresh.quit().await;
                return;
            }
        }
        let next = Current {
            client: fresh,
            generation: seen + 1,
        };
        match self.0.current.write() {
            Ok(mut c) => *c = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.succeeded();
        tokio::spawn(async move {
            tokio::time::sleep(RETIRE_AFTER).await;
            let _ = old.client.quit().await;
        });
    }
}

/// A new, unconnected client with the old one's settings; on a cluster
/// seeded with the configured nodes plus every primary the old one last
/// knew (the seeds alone may be gone).
fn reseeded(old: &Client) -> Result<Client, fred::error::Error> {
    let mut config = old.client_config();
    // Fail the first connection instead of retrying it forever in the
    // background: a replacement that cannot connect is dropped.
    config.fail_fast = true;
    if let ServerConfig::Clustered { hosts, .. } = &mut config.server {
        let known: Vec<Server> = old
            .cached_cluster_state()
            .map(|state| state.unique_primary_nodes())
            .unwrap_or_default();
        for server in known {
            if !hosts.contains(&server) {
                hosts.push(server);
            }
        }
    }
    let mut builder = Builder::from_config(config);
    builder.set_performance_config(old.perf_config());
    builder.set_connection_config(old.connection_config().clone());
    if let Some(policy) = old.client_reconnect_policy() {
        builder.set_policy(policy);
    }
    builder.build()
}
