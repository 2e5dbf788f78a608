//! The HTTP surface: one route per profile (see [`crate::route`]), the
//! server API under `api.prefix` (see [`crate::api`]), health, readiness and
//! metrics.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{any, get};

use crate::route;
use crate::state::AppState;

pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text));
    for profile in &state.profiles.profiles {
        let p = Arc::clone(profile);
        router = router.route(
            &profile.spec.path,
            any(move |st, path, query, peer, cookies, headers, upgrade| {
                route::handle(
                    Arc::clone(&p),
                    st,
                    path,
                    query,
                    peer,
                    cookies,
                    headers,
                    upgrade,
                )
            }),
        );
    }
    if state.config.api.enabled && state.config.api.listen.is_none() {
        router = router.nest(&state.config.api.prefix, crate::api::router(&state));
    }
    router.with_state(state)
}

/// The server API alone, for its own listener (`api.listen`).
pub fn api_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .nest(&state.config.api.prefix, crate::api::router(&state))
        .with_state(state)
}

async fn readyz(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    match app.readiness() {
        Ok(()) => (StatusCode::OK, "ready"),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

async fn metrics_text(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    match &app.prometheus {
        Some(h) => (
            StatusCode::OK,
            [("content-type", "text/plain; version=0.0.4")],
            h.render(),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/plain")],
            String::new(),
        ),
    }
}
