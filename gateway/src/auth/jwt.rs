//! HS256 JWT verification with the algorithm pinned by configuration, never
//! taken from the token.

use herald_shared::{Claims, Principal};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, errors::ErrorKind};

use super::AuthError;

#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtVerifier(HS256)")
    }
}

impl JwtVerifier {
    pub fn hs256(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        // Clock skew between the token issuer and the gateway; the crate's 60 s is generous.
        validation.leeway = 5;
        Self {
            key: DecodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        match decode::<Claims>(token, &self.key, &self.validation) {
            Ok(data) => Ok(data.claims.into()),
            Err(e) if matches!(e.kind(), ErrorKind::ExpiredSignature) => Err(AuthError::Expired),
            Err(_) => Err(AuthError::Invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
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

    #[test]
    fn accepts_valid_and_rejects_the_rest() {
        let v = JwtVerifier::hs256(b"s3cret");
        let p = v
            .verify(&token(Algorithm::HS256, b"s3cret", now() + 60))
            .expect("valid");
        assert_eq!(
            (p.sub.as_str(), p.org.as_deref(), p.is_admin()),
            ("alice", Some("acme"), true)
        );
        assert!(matches!(
            v.verify(&token(Algorithm::HS256, b"other", now() + 60)),
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            v.verify(&token(Algorithm::HS512, b"s3cret", now() + 60)),
            Err(AuthError::Invalid)
        ));
        assert!(matches!(
            v.verify(&token(Algorithm::HS256, b"s3cret", now() - 600)),
            Err(AuthError::Expired)
        ));
        assert!(matches!(v.verify("a.b.c"), Err(AuthError::Invalid)));
    }
}
