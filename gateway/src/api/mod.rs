//! The server API: what backends that cannot use `herald-publisher` (Python,
//! Node, .NET, Go, a shell) need, over HTTP under `api.prefix`.
//!
//! [`endpoints`] is the one list of operations: the router is built from it
//! and a test checks it against the OpenAPI document (`docs/openapi.json`,
//! served at `{prefix}/openapi.json`). Handlers are thin: they check the
//! caller's capability and the body, then use the same seams as the
//! connection code (broker, store, hub). Errors are problem+json.

mod caller;
mod control;
mod listings;
mod problem;
mod publish;
mod records;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::{Method, header};
use axum::response::IntoResponse;
use axum::routing::{MethodRouter, delete, get, post, put};
use serde::de::DeserializeOwned;

pub use caller::ApiKeys;
pub use problem::Problem;

use crate::state::AppState;

/// The OpenAPI 3.1 document of this API; its `servers` entry is rewritten to
/// the configured prefix when served.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// One operation: method, path below the prefix, handler.
pub struct Endpoint {
    pub method: Method,
    pub path: &'static str,
    handler: MethodRouter<Arc<AppState>>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

/// Every operation of the API.
pub fn endpoints() -> Vec<Endpoint> {
    let e = |method, path, handler| Endpoint {
        method,
        path,
        handler,
    };
    vec![
        e(Method::POST, "/publish", post(publish::publish)),
        e(Method::POST, "/publish/batch", post(publish::publish_batch)),
        e(
            Method::PUT,
            "/snapshots/{topic}",
            put(records::put_snapshot),
        ),
        e(
            Method::GET,
            "/snapshots/{topic}",
            get(records::get_snapshot),
        ),
        e(
            Method::PUT,
            "/resources/{topic}",
            put(records::register_resource),
        ),
        e(
            Method::DELETE,
            "/resources/{topic}",
            delete(records::unregister_resource),
        ),
        e(
            Method::POST,
            "/credentials/{kind}",
            post(records::add_credential),
        ),
        e(
            Method::POST,
            "/credentials/{kind}/remove",
            post(records::remove_credential),
        ),
        e(Method::GET, "/users/{sub}/grants", get(records::grants)),
        e(Method::POST, "/users/{sub}/grants", post(records::grant)),
        e(Method::POST, "/users/{sub}/revoke", post(records::revoke)),
        e(
            Method::POST,
            "/users/{sub}/resync",
            post(control::resync_user),
        ),
        e(
            Method::POST,
            "/users/{sub}/disconnect",
            post(control::disconnect),
        ),
        e(
            Method::POST,
            "/users/{sub}/unsubscribe",
            post(control::unsubscribe),
        ),
        e(Method::GET, "/topics", get(listings::topics)),
        e(
            Method::GET,
            "/cluster/topics",
            get(listings::cluster_topics),
        ),
        e(Method::GET, "/connections", get(listings::connections)),
        e(
            Method::GET,
            "/cluster/replicas",
            get(listings::cluster_replicas),
        ),
        e(Method::GET, "/history/{topic}", get(listings::history)),
        e(
            Method::GET,
            "/presence/{topic}/{key}",
            get(listings::presence),
        ),
        e(Method::GET, "/openapi.json", get(openapi)),
    ]
}

/// The API's routes, to nest under `api.prefix`.
pub fn router(app: &AppState) -> Router<Arc<AppState>> {
    let mut by_path: Vec<(&'static str, MethodRouter<Arc<AppState>>)> = Vec::new();
    for ep in endpoints() {
        match by_path.iter_mut().find(|(p, _)| *p == ep.path) {
            Some((_, handlers)) => *handlers = std::mem::take(handlers).merge(ep.handler),
            None => by_path.push((ep.path, ep.handler)),
        }
    }
    let mut router = Router::new();
    for (path, handlers) in by_path {
        router = router.route(path, handlers);
    }
    if app.config.api.console {
        router = router.merge(crate::console::router());
    }
    router
        .fallback(|| async { Problem::not_found("no such endpoint") })
        // axum's own refusals (405, path parameters it cannot decode) are
        // plain text; every answer of this API is problem+json.
        .layer(axum::middleware::map_response(as_problem))
        // The handlers turn an oversized body into a problem (413).
        .layer(DefaultBodyLimit::max(app.config.api.max_body_bytes))
}

async fn openapi(
    axum::extract::State(app): axum::extract::State<Arc<AppState>>,
) -> impl IntoResponse {
    let mut doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
    doc["servers"] = serde_json::json!([{ "url": app.config.api.prefix }]);
    (
        [(header::CONTENT_TYPE, "application/json")],
        doc.to_string(),
    )
}

async fn as_problem(response: axum::response::Response) -> axum::response::Response {
    let status = response.status();
    let kind = response.headers().get(header::CONTENT_TYPE);
    let is_problem = kind.is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    // The console's own pages (its sign-in form answers 401) stay HTML.
    let is_page = kind.is_some_and(|v| v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem || is_page {
        return response;
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let mut problem = Problem::from_status(status).into_response();
    if let Some(allow) = allow {
        problem.headers_mut().insert(header::ALLOW, allow);
    }
    problem
}

/// The body as JSON of type `T`, or the problem to answer with.
fn read_json<T: DeserializeOwned>(
    app: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Problem> {
    let bytes = body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(_) => Problem::too_large(app.config.api.max_body_bytes),
        other => Problem::invalid(other.body_text()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| Problem::invalid(format!("body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_lists_exactly_the_served_operations() {
        let doc: serde_json::Value =
            serde_json::from_str(OPENAPI).expect("docs/openapi.json is JSON");
        assert_eq!(doc["openapi"], "3.1.0");
        let mut documented: Vec<String> = doc["paths"]
            .as_object()
            .into_iter()
            .flatten()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .into_iter()
                    .flatten()
                    .map(move |(method, _)| format!("{} {path}", method.to_uppercase()))
            })
            .collect();
        let mut served: Vec<String> = endpoints()
            .iter()
            .map(|e| format!("{} {}", e.method, e.path))
            .collect();
        documented.sort();
        served.sort();
        assert_eq!(documented, served);
    }
}
