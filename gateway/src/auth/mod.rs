//! Authentication: from a request's query, cookies and headers to a
//! [`Principal`], following the route profile's credential sources.
//!
//! The first source that carries a non-empty value decides; its accepted
//! credential kinds are tried in order. A credential is never logged, never
//! put in a metric label and never echoed in an error.

mod jwt;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use axum_extra::extract::CookieJar;
use herald_shared::principal::ADMIN_ROLE;
use herald_shared::profile::{AuthLocation, AuthSpec, CredentialKind};
use herald_shared::topic::glob_matches;
use herald_shared::{Principal, Topic, hash_secret};

use crate::config::AuthConfig;
use crate::store::{Store, StoreError};

pub use jwt::{JwtKeyError, JwtVerifier};

/// Why a connection was not authenticated. `reason()` is the metric label.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no credential in any accepted place")]
    Missing,
    #[error("credential not recognised")]
    Invalid,
    #[error("credential expired")]
    Expired,
    #[error("credential store unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("the JWT key set could not be fetched")]
    KeysUnavailable,
}

impl AuthError {
    /// What the client is told (error frame message).
    pub fn message(&self) -> &'static str {
        match self {
            Self::Missing => "Missing token",
            Self::Invalid => "Invalid token",
            Self::Expired => "Token expired",
            Self::Store(_) | Self::KeysUnavailable => "Authentication unavailable",
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Invalid => "invalid",
            Self::Expired => "expired",
            Self::Store(_) => "store_unavailable",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }
}

/// Where a request's credentials may be.
#[derive(Debug)]
pub struct RequestCredentials<'a> {
    pub query: &'a HashMap<String, String>,
    pub cookies: &'a CookieJar,
    pub headers: &'a HeaderMap,
}

impl RequestCredentials<'_> {
    /// Where the credential that decides authentication comes from: the
    /// first of the profile's sources that carries a value.
    pub fn decisive_source(&self, spec: &AuthSpec) -> Option<AuthLocation> {
        spec.sources
            .iter()
            .find(|s| self.find(s.from, &s.name).is_some())
            .map(|s| s.from)
    }

    /// Cross-site WebSocket hijacking guard for cookie credentials: a browser
    /// attaches cookies to cross-site upgrades, so an `Origin` header must be
    /// in `allowed` (or, when `allowed` is empty, be the request's own host).
    /// Requests without `Origin` come from non-browser clients and pass.
    pub fn origin_allowed(&self, allowed: &[String]) -> bool {
        let Some(origin) = self.headers.get("origin").and_then(|v| v.to_str().ok()) else {
            return true;
        };
        if !allowed.is_empty() {
            return allowed.iter().any(|a| a == origin);
        }
        let host = self
            .headers
            .get("host")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
        !host.is_empty() && origin_host.eq_ignore_ascii_case(host)
    }

    fn find(&self, from: AuthLocation, name: &str) -> Option<String> {
        let value = match from {
            AuthLocation::Query => self.query.get(name).cloned(),
            AuthLocation::Cookie => self.cookies.get(name).map(|c| c.value().to_owned()),
            AuthLocation::Header => self
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                        .unwrap_or(v)
                        .trim()
                        .to_owned()
                }),
            // Read after the upgrade, by the upgrade handler.
            AuthLocation::FirstMessage => None,
        };
        value.filter(|v| !v.is_empty())
    }
}

#[derive(Clone)]
pub struct Authenticator {
    jwt: Option<Arc<JwtVerifier>>,
    /// SHA-256 of the admin key; compared hash to hash so timing says nothing about the key.
    admin_key_hash: Option<String>,
    admin_user: String,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    pub fn new(config: &AuthConfig, store: Arc<dyn Store>) -> Result<Self, JwtKeyError> {
        Ok(Self {
            jwt: JwtVerifier::from_config(&config.jwt, config.jwt_secret.as_ref())?.map(Arc::new),
            admin_key_hash: config.admin_key.as_ref().map(|k| hash_secret(k.expose())),
            admin_user: config.admin_user.clone(),
            store,
        })
    }

    pub async fn authenticate(
        &self,
        spec: &AuthSpec,
        creds: &RequestCredentials<'_>,
    ) -> Result<Principal, AuthError> {
        let Some((value, accept)) = spec
            .sources
            .iter()
            .find_map(|s| creds.find(s.from, &s.name).map(|v| (v, &s.accept)))
        else {
            return Err(AuthError::Missing);
        };
        self.verify(&value, accept, spec).await
    }

    /// Try one credential against the accepted kinds, in order.
    pub async fn verify(
        &self,
        credential: &str,
        accept: &[CredentialKind],
        spec: &AuthSpec,
    ) -> Result<Principal, AuthError> {
        let mut outcome = AuthError::Invalid;
        for kind in accept {
            let found = match kind {
                CredentialKind::Jwt => match &self.jwt {
                    Some(v) if credential.matches('.').count() == 2 => {
                        match v.verify(credential, spec).await {
                            Ok(p) => Some(p),
                            Err(e) => {
                                outcome = e;
                                None
                            }
                        }
                    }
                    _ => None,
                },
                CredentialKind::AdminKey => self
                    .admin_key_hash
                    .as_ref()
                    .filter(|h| **h == hash_secret(credential))
                    .map(|_| self.admin_principal()),
                CredentialKind::ApiKey => self.store.api_key(&hash_secret(credential)).await?,
                CredentialKind::Session => self.store.session(&hash_secret(credential)).await?,
            };
            if let Some(p) = found {
                return Ok(p);
            }
        }
        Err(outcome)
    }

    /// Whether a principal may join a client-chosen topic: admins always; others
    /// when a topic glob of their credential (JWT `topics`) or a grant the
    /// backend stored for them matches it.
    pub async fn may_subscribe(&self, who: &Principal, topic: &Topic) -> Result<bool, StoreError> {
        let matches = |globs: &[String]| globs.iter().any(|g| glob_matches(g, topic.as_str()));
        if who.is_admin() || matches(&who.topics) {
            return Ok(true);
        }
        Ok(matches(&self.store.grants(&who.sub).await?))
    }

    fn admin_principal(&self) -> Principal {
        let mut p = Principal::new(self.admin_user.clone());
        p.roles.push(ADMIN_ROLE.to_owned());
        p
    }
}
