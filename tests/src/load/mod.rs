//! What the load tools (`src/bin/`) share: the wall clock their frames
//! carry, percentiles of the latencies they measure, the light WebSocket
//! client every load tool reads with (so a gateway, its peers and the
//! floor are measured through the same client cost), the protocols of
//! the servers they drive, and Herald's own fan-out time.

mod fanout;
mod light_ws;
mod protocol;

pub use fanout::Fanout;
pub use light_ws::LightWs;
pub use protocol::{Frame, Protocol, Publish};

/// Microseconds since the Unix epoch: stamped into a frame by its sender,
/// compared by its reader (same machine, same clock).
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The `p` quantile (0.0–1.0) of sorted microsecond latencies, in ms; 0
/// when there are none.
pub fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    let at = ((sorted_us.len() as f64 * p) as usize).min(sorted_us.len().saturating_sub(1));
    sorted_us.get(at).copied().unwrap_or(0) as f64 / 1000.0
}

/// What a load's readers recorded, sorted for [`percentile_ms`].
pub fn sorted(latencies: &std::sync::Mutex<Vec<u64>>) -> Vec<u64> {
    let mut l = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    l.sort_unstable();
    l
}

#[cfg(test)]
mod tests {
    #[test]
    fn percentiles_of_sorted_latencies() {
        let us: Vec<u64> = (1..=100).map(|n| n * 1000).collect();
        assert_eq!(super::percentile_ms(&us, 0.5), 51.0);
        assert_eq!(super::percentile_ms(&us, 0.99), 100.0);
        assert_eq!(super::percentile_ms(&us, 1.0), 100.0);
        assert_eq!(super::percentile_ms(&[], 0.99), 0.0);
    }
}
