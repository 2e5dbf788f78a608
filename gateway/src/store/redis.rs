//! Redis-backed store, on the same keys `herald-publisher` writes.

use fred::interfaces::KeysInterface;
use fred::prelude::Client;
use futures_util::future::{BoxFuture, FutureExt};
use herald_shared::{Keys, Principal};

use super::{Store, StoreError};

#[derive(Debug)]
pub struct RedisStore {
    client: Client,
    keys: Keys,
}

impl RedisStore {
    pub fn new(client: Client, keys: Keys) -> Self {
        Self { client, keys }
    }

    async fn get(&self, key: String) -> Result<Option<String>, StoreError> {
        self.client
            .get::<Option<String>, _>(key)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    async fn principal(&self, key: String) -> Result<Option<Principal>, StoreError> {
        let Some(json) = self.get(key.clone()).await? else {
            return Ok(None);
        };
        serde_json::from_str(&json)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                key,
                reason: e.to_string(),
            })
    }
}

impl Store for RedisStore {
    fn api_key<'a>(
        &'a self,
        key_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        self.principal(self.keys.api_key(key_hash)).boxed()
    }

    fn session<'a>(
        &'a self,
        token_hash: &'a str,
    ) -> BoxFuture<'a, Result<Option<Principal>, StoreError>> {
        self.principal(self.keys.session(token_hash)).boxed()
    }

    fn snapshot<'a>(&'a self, topic: &'a str) -> BoxFuture<'a, Result<Option<String>, StoreError>> {
        self.get(self.keys.snapshot(topic)).boxed()
    }
}
