//! The gateway's own fan-out time, read from its `herald_fanout_seconds`
//! histogram: how long a replica took from receiving an event to having
//! it written to the last of its local sockets. It is the gateway's side
//! of what the floor's burst time measures, without the readers' cost,
//! which on a machine shared with the load tool dominates the latency the
//! clients see.

use anyhow::{Context, Result};

const METRIC: &str = "herald_fanout_seconds";

/// A snapshot of the histogram: cumulative counts per upper bound, the sum
/// and the count. Two snapshots subtract into the fan-outs between them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fanout {
    /// `(le, cumulative count)`, in the exposition's order (ascending).
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Fanout {
    /// Parse the histogram out of a Prometheus text exposition; empty when
    /// the gateway has not recorded one yet.
    pub fn parse(exposition: &str) -> Self {
        let buckets = exposition
            .lines()
            .filter_map(|line| line.strip_prefix(METRIC)?.strip_prefix("_bucket{le=\""))
            .filter_map(|rest| {
                let (le, count) = rest.split_once("\"}")?;
                let le = match le {
                    "+Inf" => f64::INFINITY,
                    le => le.parse().ok()?,
                };
                Some((le, count.trim().parse().ok()?))
            })
            .collect();
        Self {
            buckets,
            sum: crate::metric(exposition, &format!("{METRIC}_sum")).unwrap_or(0.0),
            count: crate::metric(exposition, &format!("{METRIC}_count")).unwrap_or(0.0),
        }
    }

    /// Fetch and parse `http://{addr}/metrics`.
    pub async fn scrape(http: &reqwest::Client, addr: &str) -> Result<Self> {
        let text = http
            .get(format!("http://{addr}/metrics"))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await
            .with_context(|| format!("metrics of {addr}"))?;
        Ok(Self::parse(&text))
    }

    /// The fan-outs recorded since `earlier` (of the same gateway).
    pub fn since(&self, earlier: &Self) -> Self {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, c)| *c)
        };
        Self {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| (le, c - before(le)))
                .collect(),
            sum: self.sum - earlier.sum,
            count: self.count - earlier.count,
        }
    }

    /// Several gateways' fan-outs as one distribution (same buckets).
    pub fn add(&mut self, other: &Self) {
        if self.buckets.is_empty() {
            self.buckets = other.buckets.clone();
        } else {
            for (mine, theirs) in self.buckets.iter_mut().zip(&other.buckets) {
                mine.1 += theirs.1;
            }
        }
        self.sum += other.sum;
        self.count += other.count;
    }

    pub fn count(&self) -> u64 {
        self.count as u64
    }

    pub fn mean_ms(&self) -> f64 {
        match self.count > 0.0 {
            true => self.sum / self.count * 1000.0,
            false => 0.0,
        }
    }

    /// The `q` quantile in ms, interpolated linearly inside its bucket as
    /// Prometheus's `histogram_quantile` does (so only as fine as the
    /// buckets: 10 ms wide from 10 to 80 ms).
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let Some(&(_, total)) = self.buckets.last() else {
            return 0.0;
        };
        if total <= 0.0 {
            return 0.0;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    return lower.0 * 1000.0;
                }
                let width = count - lower.1;
                let within = match width > 0.0 {
                    true => (rank - lower.1) / width,
                    false => 1.0,
                };
                return (lower.0 + (le - lower.0) * within) * 1000.0;
            }
            lower = (le, count);
        }
        lower.0 * 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::Fanout;

    fn exposition(counts: [u32; 4], sum: f64) -> String {
        format!(
            "# TYPE herald_fanout_seconds histogram\n\
             herald_fanout_seconds_bucket{{le=\"0.01\"}} {}\n\
             herald_fanout_seconds_bucket{{le=\"0.02\"}} {}\n\
             herald_fanout_seconds_bucket{{le=\"0.05\"}} {}\n\
             herald_fanout_seconds_bucket{{le=\"+Inf\"}} {}\n\
             herald_fanout_seconds_sum {sum}\n\
             herald_fanout_seconds_count {}\n\
             herald_delivery_lag_seconds_bucket{{le=\"0.01\"}} 99\n",
            counts[0], counts[1], counts[2], counts[3], counts[3]
        )
    }

    #[test]
    fn fanouts_between_two_scrapes_and_their_quantiles() {
        let before = Fanout::parse(&exposition([2, 2, 2, 2], 0.01));
        let after = Fanout::parse(&exposition([2, 12, 22, 22], 0.61));
        let d = after.since(&before);
        assert_eq!(d.count(), 20);
        assert!((d.mean_ms() - 30.0).abs() < 1e-9, "{}", d.mean_ms());
        // Half of the 20 in (10, 20] ms, half in (20, 50] ms.
        assert!((d.quantile_ms(0.5) - 20.0).abs() < 1e-9);
        assert!((d.quantile_ms(0.25) - 15.0).abs() < 1e-9);
        assert!((d.quantile_ms(1.0) - 50.0).abs() < 1e-9);
        let mut two = d.clone();
        two.add(&d);
        assert_eq!(two.count(), 40);
        assert!((two.quantile_ms(0.5) - 20.0).abs() < 1e-9);
    }

    #[test]
    fn nothing_recorded_reads_as_zero() {
        let none = Fanout::parse("herald_connections 3\n");
        assert_eq!(none.count(), 0);
        assert_eq!(none.mean_ms(), 0.0);
        assert_eq!(none.quantile_ms(0.99), 0.0);
        let over = Fanout::parse(&exposition([0, 0, 0, 5], 1.0));
        assert_eq!(
            over.quantile_ms(0.5),
            50.0,
            "past the last bound: the bound"
        );
    }
}
