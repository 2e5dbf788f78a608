//! Publishing through a gateway's server API instead of Redis (feature
//! `http`): for an embedded gateway, which has no Redis, or for a backend
//! that may reach the gateways but not their Redis. Same operations and the
//! same delivery (the gateway runs the history script herald-publisher runs).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{EventId, Principal, Topic};

/// Why a server-API call failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request failed: {0}")]
    Transport(#[from] reqwest::Error),
    /// The gateway refused or failed the request: its problem document.
    #[error("{status} {code}: {detail}")]
    Refused {
        status: u16,
        code: String,
        detail: String,
    },
    #[error("payload is not serialisable JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A client of one gateway's server API.
#[derive(Debug, Clone)]
pub struct HttpPublisher {
    client: reqwest::Client,
    base: String,
    key: String,
}

/// What the gateway answered to one publish.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Published {
    pub id: EventId,
    /// The idempotency key was seen before: nothing was published again.
    pub duplicate: bool,
}

#[derive(Serialize)]
struct PublishBody<'a> {
    to: Vec<&'a str>,
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<&'a str>,
}

#[derive(Deserialize)]
struct Problem {
    code: String,
    detail: String,
}

impl HttpPublisher {
    /// `base`: the gateway's URL with the API prefix
    /// (`http://127.0.0.1:8080/herald/v1`); `key`: an API key with the
    /// `publish` capability, or the operator key.
    ///
    /// ```
    /// let p = herald_publisher::HttpPublisher::new("http://127.0.0.1:8080/herald/v1", "key")?;
    /// # Ok::<(), herald_publisher::HttpError>(())
    /// ```
    pub fn new(base: &str, key: &str) -> Result<Self, HttpError> {
        // Longer than a gateway may take to answer a publish through a
        // Redis failover (`api.publish_retry_ms`, 10 s by default, plus a
        // command timeout).
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        })
    }

    /// Publish one event to an audience. With `idempotency_key`, a retry of
    /// the same request is published once.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), Box<dyn std::error::Error>> {
    /// use herald_publisher::Topic;
    /// let published = p.publish(&[Topic::user("alice")?], "progress",
    ///                            &serde_json::json!({"done": 3}), Some("job-7-step-3")).await?;
    /// # Ok(()) }
    /// ```
    pub async fn publish<T: Serialize + ?Sized>(
        &self,
        audience: &[Topic],
        event_type: &str,
        data: &T,
        idempotency_key: Option<&str>,
    ) -> Result<Published, HttpError> {
        let data = serde_json::value::to_raw_value(data)?;
        let body = PublishBody {
            to: audience.iter().map(Topic::as_str).collect(),
            event_type,
            data: &data,
            idempotency_key,
        };
        let response = self
            .client
            .post(format!("{}/publish", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await?;
        Ok(checked(response).await?.json().await?)
    }

    /// Store a topic's snapshot.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), Box<dyn std::error::Error>> {
    /// p.set_snapshot(&herald_publisher::Topic::user("alice")?, &serde_json::json!({"projects": []})).await?;
    /// # Ok(()) }
    /// ```
    pub async fn set_snapshot<T: Serialize + ?Sized>(
        &self,
        topic: &Topic,
        data: &T,
    ) -> Result<(), HttpError> {
        let response = self
            .client
            .put(format!("{}/snapshots/{}", self.base, topic.as_str()))
            .bearer_auth(&self.key)
            .json(data)
            .send()
            .await?;
        checked(response).await.map(drop)
    }

    /// Ask every connection of a user, on every replica, to send a fresh snapshot.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), herald_publisher::HttpError> {
    /// p.resync("alice").await?;
    /// # Ok(()) }
    /// ```
    pub async fn resync(&self, user: &str) -> Result<(), HttpError> {
        let response = self
            .client
            .post(format!("{}/users/{user}/resync", self.base))
            .bearer_auth(&self.key)
            .send()
            .await?;
        checked(response).await.map(drop)
    }
}

impl HttpPublisher {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, HttpError> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        checked(request.send().await?).await
    }

    /// Register a resource so routes with `resource` serve it.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), Box<dyn std::error::Error>> {
    /// p.register_resource(&herald_publisher::Topic::resource("workflow-run", "42")?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn register_resource(&self, topic: &Topic) -> Result<(), HttpError> {
        let path = format!("/resources/{}", topic.as_str());
        self.send(reqwest::Method::PUT, &path, None).await.map(drop)
    }

    /// Unregister a resource.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), Box<dyn std::error::Error>> {
    /// p.unregister_resource(&herald_publisher::Topic::resource("workflow-run", "42")?).await?;
    /// # Ok(()) }
    /// ```
    pub async fn unregister_resource(&self, topic: &Topic) -> Result<(), HttpError> {
        let path = format!("/resources/{}", topic.as_str());
        self.send(reqwest::Method::DELETE, &path, None)
            .await
            .map(drop)
    }

    /// Register an end-user API key (stored as its SHA-256) for a principal;
    /// `ttl` makes it expire.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), herald_publisher::HttpError> {
    /// p.add_api_key("k-alice", &herald_publisher::Principal::new("alice"), None).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_api_key(
        &self,
        key: &str,
        principal: &Principal,
        ttl: Option<Duration>,
    ) -> Result<(), HttpError> {
        self.add_credential("api-keys", key, principal, ttl).await
    }

    /// Remove an end-user API key.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), herald_publisher::HttpError> {
    /// p.remove_api_key("k-alice").await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_api_key(&self, key: &str) -> Result<(), HttpError> {
        self.remove_credential("api-keys", key).await
    }

    /// Register a session token (stored as its SHA-256), expiring after `ttl`.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), herald_publisher::HttpError> {
    /// use std::time::Duration;
    /// p.add_session("s-1", &herald_publisher::Principal::new("alice"), Duration::from_secs(3600)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn add_session(
        &self,
        token: &str,
        principal: &Principal,
        ttl: Duration,
    ) -> Result<(), HttpError> {
        self.add_credential("sessions", token, principal, Some(ttl))
            .await
    }

    /// Remove a session token.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), herald_publisher::HttpError> {
    /// p.remove_session("s-1").await?;
    /// # Ok(()) }
    /// ```
    pub async fn remove_session(&self, token: &str) -> Result<(), HttpError> {
        self.remove_credential("sessions", token).await
    }

    async fn add_credential(
        &self,
        kind: &str,
        secret: &str,
        principal: &Principal,
        ttl: Option<Duration>,
    ) -> Result<(), HttpError> {
        let body = serde_json::json!({
            "secret": secret,
            "sub": principal.sub,
            "org": principal.org,
            "roles": principal.roles,
            "topics": principal.topics,
            "ttl_ms": ttl.map(|t| t.as_millis().max(1) as u64),
        });
        let path = format!("/credentials/{kind}");
        self.send(reqwest::Method::POST, &path, Some(body))
            .await
            .map(drop)
    }

    async fn remove_credential(&self, kind: &str, secret: &str) -> Result<(), HttpError> {
        let path = format!("/credentials/{kind}/remove");
        let body = serde_json::json!({ "secret": secret });
        self.send(reqwest::Method::POST, &path, Some(body))
            .await
            .map(drop)
    }

    /// Let a user subscribe to channels matching a topic glob.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), herald_publisher::HttpError> {
    /// p.grant("bob", "res:channel:acme:*").await?;
    /// # Ok(()) }
    /// ```
    pub async fn grant(&self, user: &str, topic_glob: &str) -> Result<(), HttpError> {
        let body = serde_json::json!({ "topic": topic_glob });
        let path = format!("/users/{user}/grants");
        self.send(reqwest::Method::POST, &path, Some(body))
            .await
            .map(drop)
    }

    /// Remove a grant; live connections drop the channels it covered.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), herald_publisher::HttpError> {
    /// p.revoke("bob", "res:channel:acme:*").await?;
    /// # Ok(()) }
    /// ```
    pub async fn revoke(&self, user: &str, topic_glob: &str) -> Result<(), HttpError> {
        let body = serde_json::json!({ "topic": topic_glob });
        let path = format!("/users/{user}/revoke");
        self.send(reqwest::Method::POST, &path, Some(body))
            .await
            .map(drop)
    }

    /// Close every connection of a user, on every replica.
    ///
    /// ```no_run
    /// # async fn demo(p: herald_publisher::HttpPublisher) -> Result<(), herald_publisher::HttpError> {
    /// p.disconnect("mallory").await?;
    /// # Ok(()) }
    /// ```
    pub async fn disconnect(&self, user: &str) -> Result<(), HttpError> {
        let path = format!("/users/{user}/disconnect");
        self.send(reqwest::Method::POST, &path, None)
            .await
            .map(drop)
    }
}

/// The response if it is a success, else the gateway's problem as an error.
async fn checked(response: reqwest::Response) -> Result<reqwest::Response, HttpError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let text = response.text().await.unwrap_or_default();
    let (code, detail) = match serde_json::from_str::<Problem>(&text) {
        Ok(p) => (p.code, p.detail),
        Err(_) => ("http_error".to_owned(), text),
    };
    Err(HttpError::Refused {
        status: status.as_u16(),
        code,
        detail,
    })
}
