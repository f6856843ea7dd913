//! Counting pushes and summarizing a run.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::send::Outcome;

/// What one client (or, merged, the whole run) saw.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Pushes sent (answered or not).
    pub(crate) sent: u64,
    /// Pushes answered with 2xx / gRPC OK.
    pub(crate) accepted: u64,
    /// Refusals by status.
    pub(crate) refused: BTreeMap<String, u64>,
    /// Pushes without an answer.
    pub(crate) errors: u64,
    /// The first message seen per refusal status or error, with its count.
    pub(crate) messages: BTreeMap<String, (String, u64)>,
    /// Request bytes of the pushes that got an answer (accepted or refused).
    pub(crate) bytes: u64,
    /// pprof samples in accepted pushes.
    pub(crate) samples_accepted: u64,
    /// Acknowledgement latency of accepted pushes, µs.
    pub(crate) latencies_us: Vec<u64>,
}

impl Stats {
    /// Counts one push of `bytes` request bytes holding `samples` samples.
    pub(crate) fn record(
        &mut self,
        outcome: Outcome,
        latency: Duration,
        bytes: usize,
        samples: usize,
    ) {
        self.sent += 1;
        if !matches!(outcome, Outcome::Error(_)) {
            self.bytes += bytes as u64;
        }
        match outcome {
            Outcome::Accepted => {
                self.accepted += 1;
                self.samples_accepted += samples as u64;
                self.latencies_us
                    .push(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
            }
            Outcome::Refused(status, msg) => {
                *self.refused.entry(status.clone()).or_default() += 1;
                self.messages.entry(status).or_insert((msg, 0)).1 += 1;
            }
            Outcome::Error(msg) => {
                self.errors += 1;
                // Group errors by their innermost cause (the outer text carries URLs).
                let cause = msg.rsplit(": ").next().unwrap_or(&msg);
                let key = format!("error: {}", cause.chars().take(80).collect::<String>());
                self.messages.entry(key).or_insert((msg, 0)).1 += 1;
            }
        }
    }

    /// Adds `other` into `self`.
    pub(crate) fn merge(&mut self, other: Self) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        for (k, v) in other.refused {
            *self.refused.entry(k).or_default() += v;
        }
        self.errors += other.errors;
        for (k, (msg, n)) in other.messages {
            self.messages.entry(k).or_insert((msg, 0)).1 += n;
        }
        self.bytes += other.bytes;
        self.samples_accepted += other.samples_accepted;
        self.latencies_us.extend(other.latencies_us);
    }

    /// Refused pushes, all statuses together.
    pub(crate) fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }
}

/// The `q` quantile (0..=1) of sorted values, nearest rank; 0 when empty.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints the human summary and the `RESULT` line of a push run.
pub(crate) fn report_run(protocol: &str, clients: usize, seconds: f64, mut stats: Stats) {
    stats.latencies_us.sort_unstable();
    let lat = &stats.latencies_us;
    let ms = |us: u64| us as f64 / 1_000.0;
    let (p50, p90, p99, max) = (
        ms(quantile(lat, 0.50)),
        ms(quantile(lat, 0.90)),
        ms(quantile(lat, 0.99)),
        ms(lat.last().copied().unwrap_or(0)),
    );
    let secs = seconds.max(1e-9);
    let pushes_per_sec = stats.accepted as f64 / secs;
    let samples_per_sec = stats.samples_accepted as f64 / secs;
    let bytes_per_sec = stats.bytes as f64 / secs;

    println!("== {protocol}, {clients} clients, {seconds:.2} s");
    println!("pushes sent      {}", stats.sent);
    println!("accepted (2xx)   {}", stats.accepted);
    if stats.refused.is_empty() {
        println!("refused          0");
    } else {
        let by: Vec<String> = stats
            .refused
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        println!(
            "refused          {} ({})",
            stats.refused_total(),
            by.join(", ")
        );
    }
    println!("errors           {}", stats.errors);
    for (k, (msg, n)) in &stats.messages {
        println!("  {k} ×{n}: {msg}");
    }
    println!(
        "throughput       {pushes_per_sec:.1} pushes/s (accepted), {samples_per_sec:.0} samples/s, {:.2} MB/s of requests",
        bytes_per_sec / 1e6
    );
    println!("ack latency ms   p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}");
    let result = json!({
        "protocol": protocol,
        "clients": clients,
        "seconds": round3(seconds),
        "pushes_sent": stats.sent,
        "pushes_ok": stats.accepted,
        "pushes_refused": stats.refused_total(),
        "errors": stats.errors,
        "pushes_per_sec": round3(pushes_per_sec),
        "samples_per_sec": round3(samples_per_sec),
        "bytes_per_sec": round3(bytes_per_sec),
        "p50_ms": round3(p50),
        "p90_ms": round3(p90),
        "p99_ms": round3(p99),
        "max_ms": round3(max),
    });
    println!("RESULT {result}");
}

/// Rounds to three decimals (keeps the `RESULT` line short).
pub(crate) fn round3(v: f64) -> f64 {
    (v * 1_000.0).round() / 1_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&v, 0.5), 50);
        assert_eq!(quantile(&v, 0.99), 99);
        assert_eq!(quantile(&v, 1.0), 100);
        assert_eq!(quantile(&v, 0.0), 1);
        assert_eq!(quantile(&[], 0.5), 0);
    }
}
