//! Credentials: the secrets every test gateway is given, and the tokens a
//! client presents (HS256 JWTs signed with them, and the pieces to forge
//! bad ones).

/// The admin key every test gateway gets.
pub const ADMIN_KEY: &str = "test-admin-key-0123456789";
/// The server API's operator key (`HERALD_API_KEY`), for gateways started
/// with [`crate::Cluster::with_operator_key`].
pub const OPERATOR_KEY: &str = "test-operator-key-0123456789";
/// The JWT secret every test gateway gets.
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789";

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An HS256 token signed with [`JWT_SECRET`].
pub fn jwt(sub: &str, org: Option<&str>, roles: &[&str], exp: u64) -> String {
    jwt_with_topics(sub, org, roles, &[], exp)
}

/// An HS256 token with a `topics` claim (globs the holder may subscribe to).
pub fn jwt_with_topics(
    sub: &str,
    org: Option<&str>,
    roles: &[&str],
    topics: &[&str],
    exp: u64,
) -> String {
    let claims = herald_shared::Claims {
        sub: sub.to_owned(),
        org: org.map(str::to_owned),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        exp,
        topics: topics.iter().map(|t| (*t).to_owned()).collect(),
    };
    sign(&claims, JWT_SECRET)
}

/// An admin token signed with `secret`, valid for an hour: what the load
/// tools connect with (the gateway under load has its own secret).
pub fn admin_jwt_signed_with(secret: &str, sub: &str) -> String {
    let claims = herald_shared::Claims {
        sub: sub.to_owned(),
        org: None,
        roles: vec!["admin".to_owned()],
        exp: unix_now() + 3600,
        topics: Vec::new(),
    };
    sign(&claims, secret)
}

/// An HS256 token with exactly these claims (another product's claim names),
/// signed with [`JWT_SECRET`].
pub fn jwt_from_claims(claims: &serde_json::Value) -> String {
    sign(claims, JWT_SECRET)
}

fn sign(claims: &impl serde::Serialize, secret: &str) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap_or_default()
}

/// URL-safe base64 without padding, for hand-made (forged) JWTs.
pub fn base64url(input: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}
