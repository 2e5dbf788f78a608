//! The operator console: a page served by the gateway (`api.console`, off by
//! default) that shows the whole deployment from any replica (connections
//! per route and replica, topics, presence, broker state and readiness, a
//! topic's latest events) and publishes through the HTTP publish path.
//!
//! Plain HTML, CSS and JavaScript shipped inside the binary; the page loads
//! nothing from another origin (its `Content-Security-Policy` says so) and
//! reads everything from the server API. Signing in takes the operator key
//! (`HERALD_API_KEY`) once; the browser then holds a `herald_console`
//! cookie (HttpOnly, SameSite=Strict, 8 h): a JWT signed with the operator
//! key, so every replica of the deployment accepts it. The API takes that
//! cookie as the operator only on requests that also carry the
//! `x-herald-console` header, which a page of another origin cannot send.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use herald_shared::hash_secret;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::state::AppState;

/// The cookie holding a signed-in console session.
pub const COOKIE_NAME: &str = "herald_console";
/// Header the console's requests carry; the API accepts the cookie only with it.
pub const HEADER: &str = "x-herald-console";
/// How long one sign-in lasts.
const SESSION_SECS: u64 = 8 * 3600;
const AUDIENCE: &str = "herald-console";

const PAGE: &str = include_str!("console.html");
const LOGIN: &str = include_str!("login.html");
const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

/// Nothing but this origin: no inline script, no other host.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, relative to `api.prefix`.
pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/console", get(page))
        .route("/console/login", post(login))
        .route("/console/logout", post(logout))
        .route("/console/console.js", get(script))
        .route("/console/console.css", get(style))
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionClaims {
    sub: String,
    aud: String,
    exp: u64,
}

/// Whether the request carries a live console session signed with the
/// current operator key.
pub fn signed_in(app: &AppState, headers: &HeaderMap) -> bool {
    let Some(key) = &app.config.api.operator_key else {
        return false;
    };
    let cookies = CookieJar::from_headers(headers);
    let Some(token) = cookies.get(COOKIE_NAME).map(|c| c.value()) else {
        return false;
    };
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["exp", "aud"]);
    validation.leeway = 0;
    jsonwebtoken::decode::<SessionClaims>(
        token,
        &DecodingKey::from_secret(key.expose().as_bytes()),
        &validation,
    )
    .is_ok()
}

fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                axum::http::header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                axum::http::header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        body,
    )
        .into_response()
}

/// A page with the API prefix filled in (its links are absolute: the
/// sign-in form also answers at `{prefix}/console/login`).
fn page_with(template: &str, app: &AppState) -> String {
    template.replace("{{prefix}}", &app.config.api.prefix)
}

fn login_page(app: &AppState, status: StatusCode, message: &str) -> Response {
    html(
        status,
        page_with(LOGIN, app).replace("{{message}}", message),
    )
}

/// The console, or the sign-in form (401) without a session.
async fn page(State(app): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    if signed_in(&app, &headers) {
        html(StatusCode::OK, page_with(PAGE, &app))
    } else {
        login_page(
            &app,
            StatusCode::UNAUTHORIZED,
            "Sign in with the operator key.",
        )
    }
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    key: String,
}

async fn login(
    State(app): State<Arc<AppState>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    form: Result<axum::Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    // Guessing keys costs as much as connecting.
    if !app.limits.connect_allowed(peer.ip()) {
        return login_page(
            &app,
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts; wait a second.",
        );
    }
    let Some(operator) = &app.config.api.operator_key else {
        return login_page(
            &app,
            StatusCode::SERVICE_UNAVAILABLE,
            "No operator key is configured (HERALD_API_KEY).",
        );
    };
    let given = form.map(|f| f.0.key).unwrap_or_default();
    // Compared as hashes: equal-length values, no early exit on the secret.
    if given.is_empty() || hash_secret(&given) != hash_secret(operator.expose()) {
        tracing::warn!(peer = %peer.ip(), "console sign-in refused");
        return login_page(&app, StatusCode::UNAUTHORIZED, "Wrong key.");
    }
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        + SESSION_SECS;
    let claims = SessionClaims {
        sub: "operator".to_owned(),
        aud: AUDIENCE.to_owned(),
        exp,
    };
    let Ok(token) = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(operator.expose().as_bytes()),
    ) else {
        return login_page(
            &app,
            StatusCode::INTERNAL_SERVER_ERROR,
            "Cannot sign the session.",
        );
    };
    let prefix = &app.config.api.prefix;
    // Secure when the client reached us over HTTPS (TLS ends at the ingress).
    let secure = headers
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE_NAME}={token}; Path={prefix}; Max-Age={SESSION_SECS}; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    );
    redirect(prefix, &cookie)
}

async fn logout(State(app): State<Arc<AppState>>) -> Response {
    let prefix = &app.config.api.prefix;
    let cookie = format!("{COOKIE_NAME}=; Path={prefix}; Max-Age=0; HttpOnly; SameSite=Strict");
    redirect(prefix, &cookie)
}

fn redirect(prefix: &str, cookie: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&format!("{prefix}/console")) {
        headers.insert(LOCATION, v);
    }
    if let Ok(v) = HeaderValue::from_str(cookie) {
        headers.insert(SET_COOKIE, v);
    }
    response
}

async fn script() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}

async fn style() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "no-cache"),
        ],
        STYLE,
    )
}
