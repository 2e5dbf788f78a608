//! Standard JWTs: RS256 from a JSON Web Key Set served by the test (key
//! rotation by `kid`, bounded fetching), ES256 and EdDSA from PEM files, and
//! per-route `aud` / `iss`. The key pairs are test fixtures.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Result;
use herald_tests::{Gateway, GatewayOptions, WsClient, unix_now, wait_until};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/jwt")
        .join(name)
}

fn private_key(name: &str, alg: Algorithm) -> Result<EncodingKey> {
    let pem = std::fs::read(fixture(name))?;
    Ok(match alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem)?,
        Algorithm::ES256 => EncodingKey::from_ec_pem(&pem)?,
        _ => EncodingKey::from_ed_pem(&pem)?,
    })
}

fn jwk(name: &str, kid: &str) -> Result<Jwk> {
    jwk_for(name, kid, Algorithm::RS256)
}

fn jwk_for(name: &str, kid: &str, alg: Algorithm) -> Result<Jwk> {
    let mut jwk = Jwk::from_encoding_key(&private_key(name, alg)?, alg)?;
    jwk.common.key_id = Some(kid.to_owned());
    Ok(jwk)
}

/// A token for `kubegen` (aud `herald`, iss `https://idp.test` unless given).
fn token(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: Value) -> Result<String> {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    let mut body = json!({"sub": "alice", "exp": unix_now() + 600, "aud": "herald", "iss": "https://idp.test"});
    for (k, v) in claims.as_object().into_iter().flatten() {
        body[k] = v.clone();
    }
    Ok(encode(&header, &body, key)?)
}

/// Whether kubegen lets the token in: an authenticated socket answers a
/// malformed command with `bad_request`; a refused one closes with 1008.
async fn accepted(gw: &Gateway, token: &str) -> Result<bool> {
    let mut ws = WsClient::connect(&gw.ws_url(&format!("/v1/ws?token={token}"))).await?;
    ws.send_json(&json!({"type": "unsubscribe"})).await.ok();
    let first = ws.next_json().await?;
    if first["data"]["code"] == "bad_request" {
        return Ok(true);
    }
    anyhow::ensure!(
        first["data"]["code"] == "unauthorized",
        "unexpected {first}"
    );
    let (_, closed) = ws.until_closed().await?;
    anyhow::ensure!(closed.code() == Some(1008), "refused with {closed:?}");
    Ok(false)
}

/// A JWKS endpoint on loopback serving whatever `set` holds, counting fetches.
struct JwksServer {
    url: String,
    set: Arc<Mutex<String>>,
    fetches: Arc<AtomicUsize>,
}

impl JwksServer {
    async fn start(keys: Vec<Jwk>) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/jwks.json", listener.local_addr()?);
        let set = Arc::new(Mutex::new(serde_json::to_string(&JwkSet { keys })?));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (Arc::clone(&set), Arc::clone(&fetches));
        tokio::spawn(async move {
            while let Ok((mut conn, _)) = listener.accept().await {
                let body = s.lock().clone();
                f.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match conn.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = conn.write_all(response.as_bytes()).await;
                });
            }
        });
        Ok(Self { url, set, fetches })
    }

    fn serve(&self, keys: Vec<Jwk>) -> Result<()> {
        *self.set.lock() = serde_json::to_string(&JwkSet { keys })?;
        Ok(())
    }
}

/// kubegen checks `aud` and `iss`; the rest of the bundled profiles as bundled.
fn config(jwt: &str) -> String {
    format!(
        "bundled_profiles = \"extend\"\n[auth.jwt]\n{jwt}\n\
         [[profiles]]\nname = \"kubegen\"\n[profiles.auth]\naudience = [\"herald\"]\nissuer = \"https://idp.test\"\n"
    )
}

#[tokio::test]
async fn rs256_from_a_jwks_with_rotation_and_bounded_fetches() -> Result<()> {
    let jwks = JwksServer::start(vec![jwk("rsa-1.pem", "k1")?]).await?;
    let gw = Gateway::start(GatewayOptions {
        config: Some(config(&format!(
            "algorithm = \"RS256\"\njwks_url = \"{}\"\njwks_min_interval_ms = 300\n",
            jwks.url
        ))),
        ..Default::default()
    })
    .await?;
    let (k1, k2) = (
        private_key("rsa-1.pem", Algorithm::RS256)?,
        private_key("rsa-2.pem", Algorithm::RS256)?,
    );
    let rs = Algorithm::RS256;
    assert!(accepted(&gw, &token(&k1, rs, Some("k1"), json!({}))?).await?);
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "fetched on first use, then cached"
    );
    assert!(
        accepted(&gw, &token(&k1, rs, None, json!({}))?).await?,
        "no kid: the set's only key"
    );
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 1);

    // Refused: wrong audience, wrong issuer, another algorithm, a key the
    // set does not hold (under a kid it does), an expired token.
    for (what, bad) in [
        (
            "aud",
            token(&k1, rs, Some("k1"), json!({"aud": "someone-else"}))?,
        ),
        (
            "iss",
            token(&k1, rs, Some("k1"), json!({"iss": "https://evil.test"}))?,
        ),
        (
            "alg",
            token(
                &EncodingKey::from_secret(b"x"),
                Algorithm::HS256,
                Some("k1"),
                json!({}),
            )?,
        ),
        ("key", token(&k2, rs, Some("k1"), json!({}))?),
        (
            "exp",
            token(&k1, rs, Some("k1"), json!({"exp": unix_now() - 600}))?,
        ),
    ] {
        assert!(!accepted(&gw, &bad).await?, "{what} must be refused");
    }

    // Rotation: the issuer adds k2; a token signed with it is accepted once
    // the gateway fetched again (an unknown kid triggers it, rate-limited).
    jwks.serve(vec![jwk("rsa-1.pem", "k1")?, jwk("rsa-2.pem", "k2")?])?;
    let rotated = token(&k2, rs, Some("k2"), json!({}))?;
    wait_until("the rotated key is accepted", || async {
        accepted(&gw, &rotated).await.unwrap_or(false)
    })
    .await?;
    assert!(
        accepted(&gw, &token(&k1, rs, Some("k1"), json!({}))?).await?,
        "k1 still valid"
    );
    assert!(
        !accepted(&gw, &token(&k1, rs, None, json!({}))?).await?,
        "no kid, two keys: refused"
    );

    // Forged kids cannot make the gateway hammer the issuer.
    let before = jwks.fetches.load(Ordering::SeqCst);
    let started = std::time::Instant::now();
    for i in 0..20 {
        assert!(
            !accepted(
                &gw,
                &token(&k1, rs, Some(&format!("forged-{i}")), json!({}))?
            )
            .await?
        );
    }
    let fetched = jwks.fetches.load(Ordering::SeqCst) - before;
    let allowed = 1 + (started.elapsed().as_millis() / 300) as usize;
    assert!(
        fetched <= allowed,
        "{fetched} fetches in {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn es256_from_a_jwks() -> Result<()> {
    let jwks = JwksServer::start(vec![jwk_for("ec-1.pem", "ec-1", Algorithm::ES256)?]).await?;
    let gw = Gateway::start(GatewayOptions {
        config: Some(config(&format!(
            "algorithm = \"ES256\"\njwks_url = \"{}\"\n",
            jwks.url
        ))),
        ..Default::default()
    })
    .await?;
    let es = Algorithm::ES256;
    let key = private_key("ec-1.pem", es)?;
    assert!(accepted(&gw, &token(&key, es, Some("ec-1"), json!({}))?).await?);
    let rsa = private_key("rsa-1.pem", Algorithm::RS256)?;
    assert!(
        !accepted(
            &gw,
            &token(&rsa, Algorithm::RS256, Some("ec-1"), json!({}))?
        )
        .await?,
        "an RS256 token under the EC key's kid"
    );
    assert!(!accepted(&gw, &token(&key, es, Some("ec-1"), json!({"aud": "nope"}))?).await?);
    Ok(())
}

#[tokio::test]
async fn es256_and_eddsa_from_pem_files() -> Result<()> {
    for (alg, name, private) in [
        (Algorithm::ES256, "ES256", "ec-1.pem"),
        (Algorithm::EdDSA, "EdDSA", "ed-1.pem"),
    ] {
        let public = fixture(&private.replace(".pem", ".pub.pem"));
        let gw = Gateway::start(GatewayOptions {
            config: Some(config(&format!(
                "algorithm = \"{name}\"\npublic_key_file = \"{}\"\n",
                public.display()
            ))),
            ..Default::default()
        })
        .await?;
        let key = private_key(private, alg)?;
        assert!(
            accepted(&gw, &token(&key, alg, None, json!({}))?).await?,
            "{name}"
        );
        let rsa = private_key("rsa-1.pem", Algorithm::RS256)?;
        assert!(
            !accepted(&gw, &token(&rsa, Algorithm::RS256, None, json!({}))?).await?,
            "{name} pinned"
        );
        let hs = token(
            &EncodingKey::from_secret(herald_tests::JWT_SECRET.as_bytes()),
            Algorithm::HS256,
            None,
            json!({}),
        )?;
        assert!(
            !accepted(&gw, &hs).await?,
            "{name}: HS256 with the old secret is refused"
        );
    }
    Ok(())
}

#[tokio::test]
async fn key_configuration_errors_name_the_key() -> Result<()> {
    for (jwt, key) in [
        ("algorithm = \"RS256\"\n", "auth.jwt"),
        (
            "algorithm = \"HS256\"\njwks_url = \"http://x\"\n",
            "auth.jwt.algorithm",
        ),
        (
            "algorithm = \"RS256\"\njwks_url = \"ftp://x\"\n",
            "auth.jwt.jwks_url",
        ),
        ("algorithm = \"RS512\"\n", "algorithm"),
    ] {
        let path = herald_tests::scratch_dir("jwt-check").join("herald.toml");
        std::fs::write(&path, config(jwt))?;
        let out = tokio::process::Command::new(herald_tests::gateway_binary())
            .arg("--check")
            .arg("--config")
            .arg(&path)
            .output()
            .await?;
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(key), "{jwt}: {err}");
    }
    // A key file that is not a key stops the gateway at start, naming it.
    let path = herald_tests::scratch_dir("jwt-bad").join("herald.toml");
    std::fs::write(
        &path,
        config(&format!(
            "algorithm = \"ES256\"\npublic_key_file = \"{}\"\n",
            fixture("README.md").display()
        )),
    )?;
    let out = tokio::process::Command::new(herald_tests::gateway_binary())
        .env("HERALD_LISTEN", "127.0.0.1:0")
        .arg("--config")
        .arg(&path)
        .output()
        .await?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("auth.jwt.public_key_file"),
        "{err}"
    );
    Ok(())
}
