//! Every metric the gateway exports: names, labels and help in one place.
//!
//! Labels are bounded sets only (route name, close reason, drop reason, auth
//! failure reason); topics, users, addresses and tokens never become labels.
//! Per-route handles used on the hot path are resolved once, in
//! [`RouteMetrics::new`].

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use metrics::{
    Counter, Gauge, Histogram, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

const CONNECTIONS: &str = "herald_connections";
const OPENED: &str = "herald_connections_opened_total";
const CLOSED: &str = "herald_connections_closed_total";
const DELIVERED: &str = "herald_messages_delivered_total";
const RECEIVED: &str = "herald_client_messages_total";
const DROPPED: &str = "herald_messages_dropped_total";
const LAG: &str = "herald_delivery_lag_seconds";
const FANOUT: &str = "herald_fanout_seconds";
const BROKER_MESSAGES: &str = "herald_broker_messages_total";
const BROKER_INVALID: &str = "herald_broker_invalid_messages_total";
const BROKER_LAGGED: &str = "herald_broker_lagged_messages_total";
const BROKER_RECONNECTS: &str = "herald_broker_reconnects_total";
const BROKER_CONNECTED: &str = "herald_broker_connected";
const BROKER_REPAIRED: &str = "herald_broker_repaired_messages_total";
const BROKER_RESUBSCRIBED: &str = "herald_broker_resubscribed_topics_total";
const TOPICS: &str = "herald_topics_subscribed";
const AUTH_FAILURES: &str = "herald_auth_failures_total";
const BUILD_INFO: &str = "herald_build_info";
const PROBE_OK: &str = "herald_delivery_probe_ok";
const PROBE_MISSED: &str = "herald_delivery_probes_missed_total";
const PROBE_ROUND_TRIP: &str = "herald_delivery_probe_seconds";
const DRAINING: &str = "herald_draining";
const OPEN_FDS: &str = "herald_process_open_fds";
const MAX_FDS: &str = "herald_process_max_fds";
const RESIDENT: &str = "herald_process_resident_memory_bytes";

/// Lag buckets, in seconds: sub-millisecond to multi-second.
const LAG_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
];

/// Fan-out buckets, in seconds: 10 ms wide where a fan-out to thousands of
/// sockets lands (tens of milliseconds), so a quantile read off them is
/// close enough to compare with a benchmark's burst time.
const FANOUT_BUCKETS: [f64; 20] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.15, 0.2,
    0.3, 0.5, 1.0, 2.0, 5.0,
];

/// Resolved once the recorder is installed: it is recorded once per event,
/// on the fan-out's last drop, where a registry lookup would be the cost.
static FANOUT_HISTOGRAM: std::sync::OnceLock<Histogram> = std::sync::OnceLock::new();

/// Install the process-wide Prometheus recorder and describe every metric.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(LAG.to_owned()),
            &LAG_BUCKETS,
        )?
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(FANOUT.to_owned()),
            &FANOUT_BUCKETS,
        )?
        .install_recorder()?;
    let _ = FANOUT_HISTOGRAM.set(histogram!(FANOUT));
    describe_gauge!(CONNECTIONS, "Open client connections, by route.");
    describe_counter!(OPENED, "Client connections accepted, by route.");
    describe_counter!(CLOSED, "Client connections closed, by route and reason.");
    describe_counter!(
        DELIVERED,
        "Event frames written to client sockets, by route."
    );
    describe_counter!(DROPPED, "Events not delivered to a connection, by reason.");
    describe_counter!(
        RECEIVED,
        "Text and binary messages received from clients (upstream), by route."
    );
    describe_histogram!(
        LAG,
        metrics::Unit::Seconds,
        "Time from publish to socket write."
    );
    describe_histogram!(
        FANOUT,
        metrics::Unit::Seconds,
        "Time from this replica receiving an event to the last of its local connections having \
         it written to the socket (or dropped), per event queued to at least one."
    );
    describe_counter!(BROKER_MESSAGES, "Messages received from the broker.");
    describe_counter!(
        BROKER_INVALID,
        "Broker messages that were not a valid envelope."
    );
    describe_counter!(
        BROKER_LAGGED,
        "Broker messages lost because the receiver lagged."
    );
    describe_counter!(BROKER_RECONNECTS, "Broker reconnections.");
    describe_counter!(
        BROKER_REPAIRED,
        "Messages recovered from history after a broker reconnect or a slot move."
    );
    describe_counter!(
        BROKER_RESUBSCRIBED,
        "Topics subscribed again and repaired from history, by cause (reconnect, topology)."
    );
    describe_gauge!(
        BROKER_CONNECTED,
        "1 when the broker is connected and subscribed."
    );
    describe_gauge!(
        TOPICS,
        "Topics this replica is subscribed to at the broker."
    );
    describe_counter!(
        AUTH_FAILURES,
        "Failed authentications, by route and reason."
    );
    describe_gauge!(BUILD_INFO, "Always 1; the labels say which build runs.");
    describe_gauge!(
        PROBE_OK,
        "1 while this replica's delivery probes come back (what /readyz reports besides the broker)."
    );
    describe_counter!(
        PROBE_MISSED,
        "Delivery probes that did not come back in time (or could not be published)."
    );
    describe_histogram!(
        PROBE_ROUND_TRIP,
        "Time from publishing a delivery probe to receiving it."
    );
    describe_gauge!(
        DRAINING,
        "1 from SIGTERM until exit: not ready, then closing sockets; 0 while serving."
    );
    describe_gauge!(
        OPEN_FDS,
        "File descriptors the process holds (one per connection, plus listeners and Redis)."
    );
    describe_gauge!(
        MAX_FDS,
        "The process's open-file limit: connections beyond it are refused by the kernel."
    );
    describe_gauge!(RESIDENT, "Resident memory of the process, in bytes.");
    gauge!(PROBE_OK).set(0.0);
    gauge!(DRAINING).set(0.0);
    // Every label-free counter and every known label value exported at zero
    // from the start: `rate()` and `increase()` in the alert rules then see
    // the first increment, and the dashboard draws zero instead of nothing.
    for series in [
        BROKER_MESSAGES,
        BROKER_INVALID,
        BROKER_LAGGED,
        BROKER_RECONNECTS,
        BROKER_REPAIRED,
        PROBE_MISSED,
    ] {
        counter!(series).absolute(0);
    }
    for reason in Dropped::ALL {
        counter!(DROPPED, "reason" => reason.label()).absolute(0);
    }
    for cause in Resubscribed::ALL {
        counter!(BROKER_RESUBSCRIBED, "cause" => cause.label()).absolute(0);
    }
    sample_process();
    gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    // Present from the start: an alert on `== 0` must also catch a replica
    // that never connected (the broker sets it as it connects).
    gauge!(BROKER_CONNECTED).set(0.0);
    Ok(handle)
}

/// Keeps histogram windows from growing without a scrape, and samples the
/// process gauges.
pub async fn upkeep(handle: PrometheusHandle) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        handle.run_upkeep();
        sample_process();
    }
}

/// The replica began its shutdown (`/readyz` fails from now on).
pub fn draining() {
    gauge!(DRAINING).set(1.0);
}

/// File descriptors, their limit and resident memory, from `/proc/self`
/// (Linux); left unset where it cannot be read.
fn sample_process() {
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        gauge!(OPEN_FDS).set(dir.count() as f64);
    }
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("Max open files"))?;
            line.trim_start_matches("Max open files")
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        });
    if let Some(limit) = limit {
        gauge!(MAX_FDS).set(limit);
    }
    let rss_kib = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        });
    if let Some(kib) = rss_kib {
        gauge!(RESIDENT).set(kib * 1024.0);
    }
}

/// Handles for one route, resolved once.
#[derive(Debug, Clone)]
pub struct RouteMetrics {
    route: String,
    connections: Gauge,
    /// The gauge's value, readable (the server API lists it).
    open: Arc<AtomicUsize>,
    pub opened: Counter,
    pub delivered: Counter,
    /// Client messages received (upstream frames).
    pub received: Counter,
    pub lag: Histogram,
}

impl RouteMetrics {
    pub fn new(route: &str) -> Self {
        Self {
            route: route.to_owned(),
            connections: gauge!(CONNECTIONS, "route" => route.to_owned()),
            open: Arc::default(),
            opened: counter!(OPENED, "route" => route.to_owned()),
            delivered: counter!(DELIVERED, "route" => route.to_owned()),
            received: counter!(RECEIVED, "route" => route.to_owned()),
            lag: histogram!(LAG),
        }
    }

    pub fn connection_opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.connections.increment(1.0);
    }

    pub fn connection_ended(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.connections.decrement(1.0);
    }

    /// Connections open on this route now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn closed(&self, reason: &'static str) {
        counter!(CLOSED, "route" => self.route.clone(), "reason" => reason).increment(1);
    }

    pub fn auth_failure(&self, reason: &'static str) {
        counter!(AUTH_FAILURES, "route" => self.route.clone(), "reason" => reason).increment(1);
    }
}

/// Why an event was not delivered to a connection (`reason` label).
#[derive(Debug, Clone, Copy)]
pub enum Dropped {
    /// Its queue was full; it is closed.
    SlowConsumer,
    /// It waited longer than `limits.max_queue_delay_ms`; the connection is
    /// closed as a slow consumer.
    QueueDelay,
    /// It was closing.
    Closed,
    /// A repeat from Redis, already delivered.
    Duplicate,
}

impl Dropped {
    const ALL: [Self; 4] = [
        Self::SlowConsumer,
        Self::QueueDelay,
        Self::Closed,
        Self::Duplicate,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow_consumer",
            Self::QueueDelay => "queue_delay",
            Self::Closed => "closed",
            Self::Duplicate => "duplicate",
        }
    }
}

pub fn dropped(reason: Dropped) {
    dropped_events(reason, 1);
}

pub fn dropped_events(reason: Dropped, n: u64) {
    counter!(DROPPED, "reason" => reason.label()).increment(n);
}

/// One event's fan-out to this replica's connections ended after `took`.
pub fn fanout(took: Duration) {
    if let Some(h) = FANOUT_HISTOGRAM.get() {
        h.record(took.as_secs_f64());
    }
}

pub fn broker_message() {
    counter!(BROKER_MESSAGES).increment(1);
}

pub fn broker_invalid_message() {
    counter!(BROKER_INVALID).increment(1);
}

pub fn broker_lagged(n: u64) {
    counter!(BROKER_LAGGED).increment(n);
}

pub fn broker_repaired(n: u64) {
    counter!(BROKER_REPAIRED).increment(n);
}

/// Why topics were subscribed again and repaired from history (`cause`).
#[derive(Debug, Clone, Copy)]
pub enum Resubscribed {
    /// The connection was lost.
    Reconnect,
    /// A slot moved to another shard, by migration or failover, without a
    /// reconnect.
    Topology,
}

impl Resubscribed {
    const ALL: [Self; 2] = [Self::Reconnect, Self::Topology];

    fn label(self) -> &'static str {
        match self {
            Self::Reconnect => "reconnect",
            Self::Topology => "topology",
        }
    }
}

pub fn broker_resubscribed(cause: Resubscribed, topics: usize) {
    counter!(BROKER_RESUBSCRIBED, "cause" => cause.label()).increment(topics as u64);
}

pub fn broker_reconnect() {
    counter!(BROKER_RECONNECTS).increment(1);
}

pub fn broker_connected(up: bool) {
    gauge!(BROKER_CONNECTED).set(if up { 1.0 } else { 0.0 });
}

pub fn topics(n: usize) {
    gauge!(TOPICS).set(n as f64);
}

pub fn probe(ok: bool) {
    gauge!(PROBE_OK).set(if ok { 1.0 } else { 0.0 });
}

pub fn probe_missed() {
    counter!(PROBE_MISSED).increment(1);
}

pub fn probe_round_trip(seconds: f64) {
    histogram!(PROBE_ROUND_TRIP).record(seconds);
}
