//! Route profiles that exist only in test configuration files, written once
//! here for every suite that serves them. Pass one as a gateway's config
//! (`Cluster::start(n, Some(FEED.to_owned()))`); a file that lists profiles
//! replaces the bundled ones.

/// `/feed/{id}`: joins `res:feed:{id}`, nested frames carrying each event's
/// history `offset`, a JWT in `?token=`; `$resume` is the `resume` table.
macro_rules! feed {
    ($resume:literal) => {
        concat!(
            r#"
[[profiles]]
name = "feed"
path = "/feed/{id}"
join = ["res:feed:{path.id}"]
frame = { style = "nested", offset_field = "offset" }
resume = "#,
            $resume,
            r#"

[profiles.auth]
sources = [{ from = "query", name = "token", accept = ["jwt"] }]
"#
        )
    };
}

/// The feed, resumable from the position in `?since=`.
pub const FEED: &str = feed!(r#"{ query = "since" }"#);

/// The feed, resumable from `?since=`, replaying the latest 3 events to a
/// client that gives no position, and sending a `gap` frame when the history
/// no longer reaches back to the position given.
pub const FEED_WITH_REPLAY: &str =
    feed!(r#"{ query = "since", replay_last = 3, gap_type = "gap" }"#);

/// A sixth API served by configuration alone: JWT in the query, a resource
/// topic from the path, an org topic from the claims, nested frames.
pub const BUILDS: &str = r#"
[[profiles]]
name = "builds"
path = "/builds/{build_id}/events"
join = ["res:build:{path.build_id}", "org:{org}"]
frame = { style = "nested", timestamp_field = "ts", timestamp_format = "rfc3339_millis" }

[profiles.auth]
sources = [{ from = "query", name = "access_token", accept = ["jwt"] }]
failure_close_code = 4001
failure_reason = "bad token"
"#;

/// `/runs/{id}/stream`: a JWT in `?token=` or in the client's first frame
/// (within 300 ms), flat frames, typed `error` frames, close code 4001.
pub const RUNS: &str = r#"
[[profiles]]
name = "runs"
path = "/runs/{id}/stream"
join = ["res:run:{path.id}"]
frame = { style = "flat", timestamp_field = "timestamp" }
errors = { event_type = "error" }

[profiles.auth]
sources = [
  { from = "query", name = "token", accept = ["jwt"] },
  { from = "first_message", name = "token", accept = ["jwt"] },
]
failure_close_code = 4001
failure_reason = "unauthorized"
first_message_timeout_ms = 300
"#;

/// `/desk/{id}`: joins the user's topic, the org's and `res:desk:{id}`, plus
/// channels `res:board:{name}` a client subscribes to (a resume position in
/// the frame's `since`); nested frames carrying the client's resume position
/// as `offset`, served as SSE too; gap frames typed `gap`.
pub const DESK: &str = r#"
[[profiles]]
name = "desk"
path = "/desk/{id}"
join = ["user:{sub}", "org:{org}", "res:desk:{path.id}"]
frame = { style = "nested", offset_field = "offset" }
resume = { query = "since", gap_type = "gap" }
sse = { keep_alive_ms = 15000 }
commands = { subscribe = "subscribe", unsubscribe = "unsubscribe" }
errors = { event_type = "error" }

[profiles.channels]
topic = "res:board:{channel}"
max_per_connection = 8
position_field = "since"

[profiles.auth]
sources = [{ from = "query", name = "token", accept = ["jwt"] }]
"#;
