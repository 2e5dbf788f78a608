//! Who is on a connection, and how secrets that identify them are stored.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The role that passes every topic authorization and joins `role:admin`.
pub const ADMIN_ROLE: &str = "admin";

/// An authenticated identity. Stored as JSON for API keys and sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// User id or name.
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// Topic globs the principal may subscribe to by itself.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
    /// Unix seconds after which the credential is no longer valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<u64>,
}

impl Principal {
    pub fn new(sub: impl Into<String>) -> Self {
        Self {
            sub: sub.into(),
            org: None,
            roles: Vec::new(),
            topics: Vec::new(),
            exp: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| r == ADMIN_ROLE)
    }
}

/// JWT claims Herald reads (HS256 with `HERALD_JWT_SECRET`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topics: Vec<String>,
}

impl From<Claims> for Principal {
    fn from(c: Claims) -> Self {
        Self {
            sub: c.sub,
            org: c.org,
            roles: c.roles,
            topics: c.topics,
            exp: Some(c.exp),
        }
    }
}

/// SHA-256 of a secret, lowercase hex: how API keys and session tokens are
/// stored and looked up. They are long random strings, so a fast hash is the
/// right tool (a slow password hash would only slow every connect).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_stable_hex() {
        let h = hash_secret("abc");
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn admin_role() {
        let mut p = Principal::new("a");
        assert!(!p.is_admin());
        p.roles.push("admin".into());
        assert!(p.is_admin());
    }
}
