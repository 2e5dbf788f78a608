//! The seams' implementations, chosen from the configuration: broker, store
//! and presence, all in memory (one process, no Redis URL) or all on Redis.
//! A new backend is a new module per seam plus one arm here.

use std::sync::Arc;

use fred::interfaces::ClientLike;
use herald_shared::Keys;

use crate::broker::memory::MemoryBroker;
use crate::broker::redis::{self, RedisBroker};
use crate::broker::{Broker, BrokerError};
use crate::config::Config;
use crate::presence::PresenceBackend;
use crate::presence::memory::MemoryPresence;
use crate::presence::redis::RedisPresence;
use crate::store::Store;
use crate::store::memory::MemoryStore;
use crate::store::memory_history::MemoryHistory;
use crate::store::redis::RedisStore;

/// One implementation per seam.
pub struct Backends {
    pub broker: Arc<dyn Broker>,
    pub store: Arc<dyn Store>,
    pub presence: Arc<dyn PresenceBackend>,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("broker", &self.broker.name())
            .finish_non_exhaustive()
    }
}

impl Backends {
    pub fn from_config(config: &Config) -> Result<Self, BrokerError> {
        if !config.redis.is_set() {
            tracing::info!("embedded in-memory broker (single replica)");
            // Always connected: there is nothing to lose.
            crate::metrics::broker_connected(true);
            let history = Arc::new(MemoryHistory::default());
            let broker: Arc<dyn Broker> =
                Arc::new(MemoryBroker::with_history(Arc::clone(&history)));
            return Ok(Self {
                presence: Arc::new(MemoryPresence::new(Arc::clone(&broker))),
                store: Arc::new(MemoryStore::from_config(&config.auth, history)),
                broker,
            });
        }
        let keys = Keys::new(&config.redis.prefix);
        let target = config.redis.target();
        let client = redis::builder(&target)?
            .build()
            .map_err(|e| BrokerError::Config(e.to_string()))?;
        client.connect();
        let store: Arc<dyn Store> = Arc::new(RedisStore::new(client.clone(), keys.clone()));
        let broker = RedisBroker::start(&target, keys.clone(), Arc::clone(&store))?;
        tracing::info!("redis broker");
        Ok(Self {
            broker,
            store,
            presence: Arc::new(RedisPresence::new(client, keys)),
        })
    }
}
