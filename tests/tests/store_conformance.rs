//! One suite for every store: in memory (embedded mode, credentials from the
//! config file) and on Redis (written by backends through `herald-publisher`,
//! on a real redis-server) must answer the gateway's lookups alike.

use herald_shared::redis_target::RedisTarget;
use std::sync::Arc;

use anyhow::Result;
use fred::interfaces::ClientLike;
use herald_gateway::broker::redis;
use herald_gateway::config::{AuthConfig, StoredCredential};
use herald_gateway::store::Store;
use herald_gateway::store::memory::MemoryStore;
use herald_gateway::store::redis::RedisStore;
use herald_publisher::Publisher;
use herald_shared::{Keys, Principal, hash_secret};
use herald_tests::RedisServer;

const KEY: &str = "ak_conformance_0123456789";

async fn conformance(store: Arc<dyn Store>) -> Result<()> {
    // Credentials are looked up by hash; unknown ones are absent, not errors.
    let found = store.api_key(&hash_secret(KEY)).await?;
    let found = found.expect("seeded key found");
    assert_eq!(found.sub, "svc-1");
    assert_eq!(found.org.as_deref(), Some("acme"));
    assert_eq!(found.roles, vec!["agent".to_owned()]);
    assert!(store.api_key(&hash_secret("unknown")).await?.is_none());
    assert!(
        store.api_key(KEY).await?.is_none(),
        "never by the clear key"
    );
    assert!(store.session(&hash_secret("unknown")).await?.is_none());

    // Nothing stored for a topic nobody wrote.
    assert!(store.snapshot("user:nobody").await?.is_none());
    assert!(store.grants("nobody").await?.is_empty());
    assert!(
        store
            .history_after("user:nobody", "0-0", 10)
            .await?
            .is_empty()
    );
    assert!(store.history_last("user:nobody", 10).await?.is_empty());
    assert!(store.history_oldest("user:nobody").await?.is_none());

    // Leases: one holder at a time, re-entrant for the holder, released only
    // by the holder.
    assert!(store.lease_acquire("client-1", "h1", 60_000).await?);
    assert!(store.lease_acquire("client-1", "h1", 60_000).await?);
    assert!(!store.lease_acquire("client-1", "h2", 60_000).await?);
    store.lease_release("client-1", "h2").await?;
    assert!(!store.lease_acquire("client-1", "h2", 60_000).await?);
    store
        .lease_renew(&[("client-1".to_owned(), "h1".to_owned(), 60_000)])
        .await?;
    assert!(!store.lease_acquire("client-1", "h2", 60_000).await?);
    store.lease_release("client-1", "h1").await?;
    assert!(store.lease_acquire("client-1", "h2", 60_000).await?);
    store.lease_release("client-1", "h2").await?;

    // Snapshots written through the store are what it reads back.
    store.set_snapshot("user:snap", r#"{"a":1}"#).await?;
    assert_eq!(
        store.snapshot("user:snap").await?.as_deref(),
        Some(r#"{"a":1}"#)
    );
    store.set_snapshot("user:snap", "[]").await?;
    assert_eq!(store.snapshot("user:snap").await?.as_deref(), Some("[]"));

    // Idempotency keys: the first value wins until released by its owner or
    // expired.
    assert_eq!(store.claim_once("idem-1", "id-a", 60_000).await?, None);
    assert_eq!(
        store.claim_once("idem-1", "id-b", 60_000).await?.as_deref(),
        Some("id-a")
    );
    store.release_claim("idem-1", "id-b").await?;
    assert_eq!(
        store.claim_once("idem-1", "id-c", 60_000).await?.as_deref(),
        Some("id-a"),
        "released only by the value that holds it"
    );
    store.release_claim("idem-1", "id-a").await?;
    assert_eq!(store.claim_once("idem-1", "id-d", 60_000).await?, None);
    assert_eq!(store.claim_once("idem-short", "x", 50).await?, None);
    herald_tests::wait_until("a claim expires with its ttl", || async {
        store.claim_once("idem-short", "y", 50).await.ok() == Some(None)
    })
    .await?;

    // Replica reports: the latest per replica, a stale one dropped for good.
    assert!(store.replica_reports(10_000, 5_000).await?.is_empty());
    store.put_replica_report("r-b", r#"{"n":1}"#, 9_000).await?;
    store.put_replica_report("r-a", r#"{"n":2}"#, 2_000).await?;
    store.put_replica_report("r-b", r#"{"n":3}"#, 9_500).await?;
    assert_eq!(
        store.replica_reports(10_000, 5_000).await?,
        [r#"{"n":3}"#],
        "r-a is stale; r-b's newest report"
    );
    store.put_replica_report("r-a", r#"{"n":4}"#, 1_000).await?;
    store.put_replica_report("r-c", r#"{"n":5}"#, 9_900).await?;
    assert_eq!(
        store.replica_reports(10_000, 60_000).await?,
        [r#"{"n":4}"#, r#"{"n":3}"#, r#"{"n":5}"#],
        "by replica id"
    );
    Ok(())
}

#[tokio::test]
async fn memory_store_conforms() -> Result<()> {
    let auth = AuthConfig {
        api_keys: vec![StoredCredential {
            sha256: hash_secret(KEY),
            sub: "svc-1".to_owned(),
            org: Some("acme".to_owned()),
            roles: vec!["agent".to_owned()],
        }],
        ..AuthConfig::default()
    };
    conformance(Arc::new(MemoryStore::from_config(&auth, Arc::default()))).await
}

#[tokio::test]
async fn redis_store_conforms() -> Result<()> {
    let redis = RedisServer::start().await?;
    let publisher = Publisher::connect_with_prefix(&redis.url(), "conformance").await?;
    let mut principal = Principal::new("svc-1");
    principal.org = Some("acme".to_owned());
    principal.roles = vec!["agent".to_owned()];
    publisher.add_api_key(KEY, &principal).await?;
    let client = redis::builder(&RedisTarget::from_url(&redis.url()))?.build()?;
    client.init().await?;
    conformance(Arc::new(RedisStore::new(client, Keys::new("conformance")))).await
}
