//! JWT verification with the algorithm pinned by configuration, never taken
//! from the token: HS256 with `HERALD_JWT_SECRET`, or RS256 / ES256 / EdDSA
//! with a public key from a PEM file or a JSON Web Key Set. A key set is
//! fetched on first use, kept for `jwks_refresh_ms`, and fetched again early
//! when a token names a `kid` it lacks, at most once per
//! `jwks_min_interval_ms` (so forged `kid`s cannot make the gateway hammer
//! the issuer). `aud` and `iss` are checked per route profile.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use herald_shared::Principal;
use herald_shared::profile::{AuthSpec, ClaimNames};
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind};

use super::AuthError;
use crate::config::{JwtAlgorithm, JwtConfig, Secret};

/// Largest key set accepted, in bytes and in keys.
const JWKS_MAX_BYTES: usize = 1024 * 1024;
const JWKS_MAX_KEYS: usize = 100;
const JWKS_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the configured key could not be loaded (start-up errors).
#[derive(Debug, thiserror::Error)]
pub enum JwtKeyError {
    #[error("auth.jwt.public_key_file {path}: {reason}")]
    PublicKey { path: String, reason: String },
    #[error("auth.jwt.jwks_url: {0}")]
    Client(String),
}

enum Keys {
    /// One key for every token (HS256 secret, PEM public key).
    Fixed(DecodingKey),
    Jwks(Jwks),
}

pub struct JwtVerifier {
    algorithm: Algorithm,
    keys: Keys,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtVerifier({:?})", self.algorithm)
    }
}

impl JwtVerifier {
    pub fn hs256(secret: &[u8]) -> Self {
        Self {
            algorithm: Algorithm::HS256,
            keys: Keys::Fixed(DecodingKey::from_secret(secret)),
        }
    }

    /// The verifier the configuration describes; `None` when JWTs cannot be
    /// verified (HS256 without a secret).
    pub fn from_config(
        cfg: &JwtConfig,
        secret: Option<&Secret>,
    ) -> Result<Option<Self>, JwtKeyError> {
        let algorithm = match cfg.algorithm {
            JwtAlgorithm::Hs256 => {
                return Ok(secret.map(|s| Self::hs256(s.expose().as_bytes())));
            }
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::Es256 => Algorithm::ES256,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        };
        let keys = match (&cfg.public_key_file, &cfg.jwks_url) {
            (Some(path), _) => {
                let fail = |reason: String| JwtKeyError::PublicKey {
                    path: path.display().to_string(),
                    reason,
                };
                let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
                let key = match algorithm {
                    Algorithm::RS256 => DecodingKey::from_rsa_pem(&pem),
                    Algorithm::ES256 => DecodingKey::from_ec_pem(&pem),
                    _ => DecodingKey::from_ed_pem(&pem),
                }
                .map_err(|e| fail(e.to_string()))?;
                Keys::Fixed(key)
            }
            (None, Some(url)) => {
                let loopback = ["http://127.", "http://localhost", "http://[::1]"];
                if url.starts_with("http://") && !loopback.iter().any(|l| url.starts_with(l)) {
                    tracing::warn!(%url, "JWT keys fetched over plain http: anyone on the path can swap them; use https");
                }
                Keys::Jwks(Jwks::new(url, cfg)?)
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(Self { algorithm, keys }))
    }

    /// Verify a token for a route: signature with the pinned algorithm,
    /// `exp`/`nbf`, `sub`, and the route's `aud` / `iss` when it sets them.
    pub async fn verify(&self, token: &str, spec: &AuthSpec) -> Result<Principal, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Invalid)?;
        if header.alg != self.algorithm {
            return Err(AuthError::Invalid);
        }
        let mut validation = Validation::new(self.algorithm);
        // A route that checks `aud` / `iss` also requires them: the crate
        // compares them only when present.
        let mut required = vec!["exp", "sub"];
        if !spec.audience.is_empty() {
            required.push("aud");
        }
        if spec.issuer.is_some() {
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        validation.validate_nbf = true;
        // Clock skew between the token issuer and the gateway; the crate's 60 s is generous.
        validation.leeway = 5;
        if spec.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&spec.audience);
        }
        if let Some(iss) = &spec.issuer {
            validation.set_issuer(&[iss]);
        }
        let fetched;
        let key = match &self.keys {
            Keys::Fixed(key) => key,
            Keys::Jwks(jwks) => {
                fetched = jwks.key(header.kid.as_deref(), self.algorithm).await?;
                &fetched
            }
        };
        match decode::<TokenClaims>(token, key, &validation) {
            Ok(data) => data.claims.principal(&spec.claims),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(AuthError::Expired),
            Err(_) => Err(AuthError::Invalid),
        }
    }
}

/// A verified token's claims: the fixed ones typed, the rest kept so the
/// route's `auth.claims` can name where org and roles are.
#[derive(serde::Deserialize)]
struct TokenClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    topics: Vec<String>,
    #[serde(flatten)]
    other: serde_json::Map<String, serde_json::Value>,
}

impl TokenClaims {
    /// The principal; a named claim of the wrong type makes the token invalid.
    fn principal(mut self, names: &ClaimNames) -> Result<Principal, AuthError> {
        use serde_json::Value;
        let org = match self.other.remove(&names.org) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return Err(AuthError::Invalid),
        };
        let roles = match self.other.remove(&names.roles) {
            None | Some(Value::Null) => Vec::new(),
            Some(v) => serde_json::from_value(v).map_err(|_| AuthError::Invalid)?,
        };
        Ok(Principal {
            sub: self.sub,
            org,
            roles,
            topics: self.topics,
            exp: Some(self.exp),
        })
    }
}

/// A JSON Web Key Set fetched from the issuer and cached.
struct Jwks {
    url: String,
    client: reqwest::Client,
    refresh: Duration,
    min_interval: Duration,
    /// Never held across the fetch: tokens with cached keys never wait on it.
    state: parking_lot::Mutex<JwksState>,
    /// One fetch at a time; tokens without a usable key wait for it.
    fetching: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct JwksState {
    /// `kid` (empty when the key has none) → key, for the pinned algorithm.
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
    tried_at: Option<Instant>,
}

impl JwksState {
    fn lookup(&self, kid: Option<&str>) -> Option<DecodingKey> {
        match kid {
            Some(kid) => self.keys.get(kid).cloned(),
            // A token without `kid` is served only by a set of one key.
            None if self.keys.len() == 1 => self.keys.values().next().cloned(),
            None => None,
        }
    }

    /// What to answer without a fresh fetch.
    fn answer(&self, found: Option<DecodingKey>) -> Result<DecodingKey, AuthError> {
        match (found, self.fetched_at) {
            (Some(key), _) => Ok(key),
            (None, None) => Err(AuthError::KeysUnavailable),
            (None, Some(_)) => Err(AuthError::Invalid),
        }
    }
}

impl Jwks {
    fn new(url: &str, cfg: &JwtConfig) -> Result<Self, JwtKeyError> {
        let client = reqwest::Client::builder()
            .timeout(JWKS_TIMEOUT)
            .build()
            .map_err(|e| JwtKeyError::Client(e.to_string()))?;
        Ok(Self {
            url: url.to_owned(),
            client,
            refresh: Duration::from_millis(cfg.jwks_refresh_ms),
            min_interval: Duration::from_millis(cfg.jwks_min_interval_ms),
            state: parking_lot::Mutex::default(),
            fetching: tokio::sync::Mutex::default(),
        })
    }

    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, AuthError> {
        let cached = {
            let state = self.state.lock();
            let fresh = state.fetched_at.is_some_and(|t| t.elapsed() < self.refresh);
            (state.lookup(kid), fresh)
        };
        if let (Some(key), true) = cached {
            return Ok(key);
        }
        // A refresh already under way: a stale key still serves meanwhile.
        let _fetching = match (self.fetching.try_lock(), cached.0) {
            (Ok(guard), _) => guard,
            (Err(_), Some(key)) => return Ok(key),
            (Err(_), None) => self.fetching.lock().await,
        };
        let now = Instant::now();
        let found = {
            let mut state = self.state.lock();
            let stale = state
                .fetched_at
                .is_none_or(|t| now.duration_since(t) >= self.refresh);
            let found = state.lookup(kid);
            if !stale && let Some(key) = found {
                return Ok(key);
            }
            // One fetch per interval, claimed under the lock; every other
            // token is answered from the keys already held.
            let may_fetch = state
                .tried_at
                .is_none_or(|t| now.duration_since(t) >= self.min_interval);
            if !may_fetch {
                return state.answer(found);
            }
            state.tried_at = Some(now);
            found
        };
        match self.fetch(alg).await {
            Ok(keys) => {
                let mut state = self.state.lock();
                state.keys = keys;
                state.fetched_at = Some(now);
                state.lookup(kid).ok_or(AuthError::Invalid)
            }
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "cannot fetch the JWT key set");
                // A stale key still verifies until the issuer answers again.
                self.state.lock().answer(found)
            }
        }
    }

    async fn fetch(&self, alg: Algorithm) -> Result<HashMap<String, DecodingKey>, String> {
        let mut response = self
            .client
            .get(&self.url)
            .send()
            .await
            .map_err(|e| e.to_string())?
            .error_for_status()
            .map_err(|e| e.to_string())?;
        let too_large = || format!("key set larger than {JWKS_MAX_BYTES} bytes");
        if response
            .content_length()
            .is_some_and(|n| n > JWKS_MAX_BYTES as u64)
        {
            return Err(too_large());
        }
        // Read with a cap: a chunked answer has no length to check first.
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > JWKS_MAX_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
        let mut keys = HashMap::new();
        for jwk in set.keys.iter().take(JWKS_MAX_KEYS) {
            // Keys for encryption, or for another algorithm, are not ours.
            if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
                continue;
            }
            if let Some(key_alg) = jwk.common.key_algorithm
                && !same_algorithm(key_alg, alg)
            {
                continue;
            }
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(jwk.common.key_id.clone().unwrap_or_default(), key);
            }
        }
        Ok(keys)
    }
}

fn same_algorithm(key: KeyAlgorithm, alg: Algorithm) -> bool {
    matches!(
        (key, alg),
        (KeyAlgorithm::RS256, Algorithm::RS256)
            | (KeyAlgorithm::ES256, Algorithm::ES256)
            | (KeyAlgorithm::EdDSA, Algorithm::EdDSA)
            | (KeyAlgorithm::HS256, Algorithm::HS256)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_shared::Claims;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    /// HS256 over any claims, with the key `k`.
    fn signed_with_k(claims: &impl serde::Serialize) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(b"k"),
        )
        .expect("encodes")
    }

    fn token(alg: Algorithm, secret: &[u8], exp: u64) -> String {
        let claims = Claims {
            sub: "alice".into(),
            org: Some("acme".into()),
            roles: vec!["admin".into()],
            exp,
            topics: vec![],
        };
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("encodes")
    }

    #[tokio::test]
    async fn accepts_valid_and_rejects_the_rest() {
        let v = JwtVerifier::hs256(b"s3cret");
        let spec = AuthSpec::default();
        let p = v
            .verify(&token(Algorithm::HS256, b"s3cret", now() + 60), &spec)
            .await
            .expect("valid");
        assert_eq!(
            (p.sub.as_str(), p.org.as_deref(), p.is_admin()),
            ("alice", Some("acme"), true)
        );
        for bad in [
            token(Algorithm::HS256, b"other", now() + 60),
            token(Algorithm::HS512, b"s3cret", now() + 60),
            "a.b.c".to_owned(),
        ] {
            assert!(matches!(
                v.verify(&bad, &spec).await,
                Err(AuthError::Invalid)
            ));
        }
        assert!(matches!(
            v.verify(&token(Algorithm::HS256, b"s3cret", now() - 600), &spec)
                .await,
            Err(AuthError::Expired)
        ));
    }

    #[tokio::test]
    async fn org_and_roles_come_from_the_claims_the_route_names() {
        let v = JwtVerifier::hs256(b"k");
        let signed = |claims: serde_json::Value| signed_with_k(&claims);
        let mut spec = AuthSpec::default();
        spec.claims.org = "org_id".into();
        let t =
            signed(serde_json::json!({"sub":"u1","exp":now()+60,"org_id":"o9","org":"ignored"}));
        let p = v.verify(&t, &spec).await.expect("valid");
        assert_eq!((p.sub.as_str(), p.org.as_deref()), ("u1", Some("o9")));
        let numeric = signed(serde_json::json!({"sub":"u1","exp":now()+60,"org_id":42}));
        let p = v.verify(&numeric, &spec).await.expect("numeric org");
        assert_eq!(p.org.as_deref(), Some("42"));
        let wrong_type = signed(serde_json::json!({"sub":"u1","exp":now()+60,"org_id":{"a":1}}));
        assert!(matches!(
            v.verify(&wrong_type, &spec).await,
            Err(AuthError::Invalid)
        ));
        // The default names still read `org` and `roles`.
        let p = v.verify(&t, &AuthSpec::default()).await.expect("valid");
        assert_eq!(p.org.as_deref(), Some("ignored"));
    }

    #[tokio::test]
    async fn audience_and_issuer_are_checked_when_the_route_sets_them() {
        #[derive(serde::Serialize)]
        struct WithAud<'a> {
            sub: &'a str,
            exp: u64,
            aud: &'a str,
            iss: &'a str,
        }
        let v = JwtVerifier::hs256(b"k");
        let signed = |aud: &str, iss: &str| {
            signed_with_k(&WithAud {
                sub: "a",
                exp: now() + 60,
                aud,
                iss,
            })
        };
        let mut spec = AuthSpec::default();
        assert!(
            v.verify(&signed("herald", "idp"), &spec).await.is_ok(),
            "unchecked by default"
        );
        spec.audience = vec!["herald".into()];
        spec.issuer = Some("https://idp".into());
        assert!(
            v.verify(&signed("herald", "https://idp"), &spec)
                .await
                .is_ok()
        );
        assert!(
            v.verify(&signed("other", "https://idp"), &spec)
                .await
                .is_err()
        );
        assert!(
            v.verify(&signed("herald", "https://evil"), &spec)
                .await
                .is_err()
        );
        #[derive(serde::Serialize)]
        struct Bare<'a> {
            sub: &'a str,
            exp: u64,
        }
        let bare = signed_with_k(&Bare {
            sub: "a",
            exp: now() + 60,
        });
        assert!(
            v.verify(&bare, &spec).await.is_err(),
            "aud and iss required when checked"
        );
        spec.issuer = None;
        assert!(
            v.verify(&bare, &spec).await.is_err(),
            "aud required when checked"
        );
    }
}
