//! The metrics generator: simulated request traffic per workload, exposed
//! under Istio's, Linkerd's, Consul's (Envoy's) and Cilium Hubble's
//! standard metric names, for Prometheus to scrape. Labels are those a
//! scrape of each mesh yields: Linkerd's and Consul's carry the pod's
//! labels (`app`, `version`) as linkerd-viz and the usual `kubernetes-pods`
//! scrape job copy them; Hubble's name the workload (`<service>-<version>`).
//!
//! Tests set each workload's request rate, error rate and latency through
//! the control endpoint; counters then grow at those rates in real time,
//! exactly as a mesh proxy's would, so `rate()` and `histogram_quantile()`
//! in Prometheus see what the test asked for.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// What one workload (a service's version) is doing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub service: String,
    pub namespace: String,
    pub version: String,
    /// Requests per second.
    pub rps: f64,
    /// Share of requests answered with a 500, 0–1.
    #[serde(default)]
    pub error_rate: f64,
    /// Latency of the typical request, in milliseconds.
    #[serde(default = "default_latency")]
    pub latency_ms: f64,
    /// A slow tail: this share of requests (0–1) takes `tailLatencyMs`.
    #[serde(default)]
    pub tail_fraction: f64,
    #[serde(default)]
    pub tail_latency_ms: f64,
}

fn default_latency() -> f64 {
    10.0
}

/// A workload no real proxy could report.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Unreal {
    #[error("rps must be a non-negative number, got {0}")]
    Rps(f64),
    #[error("errorRate and tailFraction must be between 0 and 1")]
    Share,
    #[error("latencies must be non-negative")]
    Latency,
    #[error("invalid label value {0:?}")]
    Label(String),
}

impl Workload {
    pub fn new(service: &str, namespace: &str, version: &str) -> Self {
        Self {
            service: service.into(),
            namespace: namespace.into(),
            version: version.into(),
            rps: 0.0,
            error_rate: 0.0,
            latency_ms: default_latency(),
            tail_fraction: 0.0,
            tail_latency_ms: 0.0,
        }
    }

    pub fn rps(mut self, rps: f64) -> Self {
        self.rps = rps;
        self
    }

    pub fn error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    pub fn latency_ms(mut self, ms: f64) -> Self {
        self.latency_ms = ms;
        self
    }

    pub fn tail(mut self, fraction: f64, ms: f64) -> Self {
        self.tail_fraction = fraction;
        self.tail_latency_ms = ms;
        self
    }

    fn key(&self) -> (String, String, String) {
        (
            self.namespace.clone(),
            self.service.clone(),
            self.version.clone(),
        )
    }

    /// Rejects values no real proxy could report.
    pub fn validate(&self) -> Result<(), Unreal> {
        let share = |v: f64| (0.0..=1.0).contains(&v);
        if !(self.rps.is_finite() && self.rps >= 0.0) {
            return Err(Unreal::Rps(self.rps));
        }
        if !share(self.error_rate) || !share(self.tail_fraction) {
            return Err(Unreal::Share);
        }
        if !(self.latency_ms >= 0.0 && self.tail_latency_ms >= 0.0) {
            return Err(Unreal::Latency);
        }
        for name in [&self.service, &self.namespace, &self.version] {
            if name.is_empty() || name.contains(['"', '\\', '\n']) {
                return Err(Unreal::Label(name.clone()));
            }
        }
        Ok(())
    }
}

/// Istio's default request-duration buckets (milliseconds).
const ISTIO_BUCKETS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];
/// Linkerd's response-latency buckets (milliseconds).
/// Envoy's default histogram bounds (milliseconds), as Consul's sidecars
/// expose them: the same as Istio's.
const ENVOY_BUCKETS: &[f64] = ISTIO_BUCKETS;

/// Hubble's (client_golang's default) bounds, in seconds.
const HUBBLE_BUCKETS_S: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

const LINKERD_BUCKETS: &[f64] = &[
    1.0, 2.0, 3.0, 4.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0,
    1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 10000.0, 20000.0, 30000.0, 40000.0, 50000.0,
];

#[derive(Clone, Debug, Default)]
struct Totals {
    ok: f64,
    errors: f64,
    /// Requests of the typical latency and of the tail.
    typical: f64,
    tail: f64,
}

#[derive(Debug)]
struct Series {
    workload: Workload,
    totals: Totals,
}

/// All workloads, their counters, and when they were last advanced.
#[derive(Debug)]
pub struct Generator {
    series: BTreeMap<(String, String, String), Series>,
    last: Instant,
}

impl Default for Generator {
    fn default() -> Self {
        Self::new(Instant::now())
    }
}

impl Generator {
    pub fn new(now: Instant) -> Self {
        Self {
            series: BTreeMap::new(),
            last: now,
        }
    }

    /// Grows every counter by what its workload did since the last call.
    pub fn advance(&mut self, now: Instant) {
        let secs = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        for s in self.series.values_mut() {
            let w = &s.workload;
            let n = w.rps * secs;
            s.totals.errors += n * w.error_rate;
            s.totals.ok += n * (1.0 - w.error_rate);
            s.totals.tail += n * w.tail_fraction;
            s.totals.typical += n * (1.0 - w.tail_fraction);
        }
    }

    /// Sets workloads' behaviour from `now` on. Counters are never reset (a
    /// reset would look like a restart to `rate()`); a workload not named
    /// keeps its counters and its rate.
    pub fn set(&mut self, now: Instant, workloads: Vec<Workload>) {
        self.advance(now);
        for w in workloads {
            match self.series.get_mut(&w.key()) {
                Some(s) => s.workload = w,
                None => {
                    self.series.insert(
                        w.key(),
                        Series {
                            workload: w,
                            totals: Totals::default(),
                        },
                    );
                }
            }
        }
    }

    /// Stops every workload's traffic (counters stay).
    pub fn quiesce(&mut self, now: Instant) {
        self.advance(now);
        for s in self.series.values_mut() {
            s.workload.rps = 0.0;
        }
    }

    /// The Prometheus text exposition of every series, in a stable order.
    pub fn exposition(&mut self, now: Instant) -> String {
        self.advance(now);
        let mut out = String::new();
        out.push_str("# TYPE istio_requests_total counter\n");
        for s in self.series.values() {
            let l = istio_labels(&s.workload);
            let _ = writeln!(
                out,
                "istio_requests_total{{{l},response_code=\"200\"}} {}",
                s.totals.ok
            );
            let _ = writeln!(
                out,
                "istio_requests_total{{{l},response_code=\"500\"}} {}",
                s.totals.errors
            );
        }
        out.push_str("# TYPE istio_request_duration_milliseconds histogram\n");
        for s in self.series.values() {
            let l = istio_labels(&s.workload);
            histogram(
                &mut out,
                "istio_request_duration_milliseconds",
                &l,
                ISTIO_BUCKETS,
                1.0,
                s,
            );
        }
        out.push_str("# TYPE response_total counter\n");
        for s in self.series.values() {
            let l = linkerd_labels(&s.workload);
            let _ = writeln!(
                out,
                "response_total{{{l},classification=\"success\",status_code=\"200\"}} {}",
                s.totals.ok
            );
            let _ = writeln!(
                out,
                "response_total{{{l},classification=\"failure\",status_code=\"500\"}} {}",
                s.totals.errors
            );
        }
        out.push_str("# TYPE response_latency_ms histogram\n");
        for s in self.series.values() {
            let l = linkerd_labels(&s.workload);
            histogram(&mut out, "response_latency_ms", &l, LINKERD_BUCKETS, 1.0, s);
        }
        out.push_str("# TYPE envoy_cluster_upstream_rq counter\n");
        for s in self.series.values() {
            let l = consul_labels(&s.workload);
            for (code, n) in [("200", s.totals.ok), ("500", s.totals.errors)] {
                let _ = writeln!(
                    out,
                    "envoy_cluster_upstream_rq{{{l},envoy_response_code=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str("# TYPE envoy_cluster_upstream_rq_time histogram\n");
        for s in self.series.values() {
            let l = consul_labels(&s.workload);
            histogram(
                &mut out,
                "envoy_cluster_upstream_rq_time",
                &l,
                ENVOY_BUCKETS,
                1.0,
                s,
            );
        }
        out.push_str("# TYPE hubble_http_requests_total counter\n");
        for s in self.series.values() {
            let l = hubble_labels(&s.workload);
            for (code, n) in [("200", s.totals.ok), ("500", s.totals.errors)] {
                let _ = writeln!(
                    out,
                    "hubble_http_requests_total{{{l},method=\"GET\",protocol=\"HTTP/1.1\",status=\"{code}\"}} {n}"
                );
            }
        }
        out.push_str("# TYPE hubble_http_request_duration_seconds histogram\n");
        for s in self.series.values() {
            let l = format!("{},method=\"GET\"", hubble_labels(&s.workload));
            histogram(
                &mut out,
                "hubble_http_request_duration_seconds",
                &l,
                HUBBLE_BUCKETS_S,
                1000.0,
                s,
            );
        }
        out
    }
}

fn istio_labels(w: &Workload) -> String {
    format!(
        "reporter=\"destination\",destination_service_name=\"{s}\",destination_service_namespace=\"{ns}\",destination_service=\"{s}.{ns}.svc.cluster.local\",destination_workload=\"{s}-{v}\",destination_workload_namespace=\"{ns}\",destination_app=\"{s}\",destination_version=\"{v}\"",
        s = w.service,
        ns = w.namespace,
        v = w.version
    )
}

/// linkerd-viz's scrape: `deployment` from the proxy's `linkerd.io/proxy-deployment`
/// pod label, then the pod's own labels.
fn linkerd_labels(w: &Workload) -> String {
    format!(
        "direction=\"inbound\",namespace=\"{ns}\",deployment=\"{s}-{v}\",app=\"{s}\",version=\"{v}\",tls=\"true\"",
        s = w.service,
        ns = w.namespace,
        v = w.version
    )
}

/// Consul's Envoy sidecars: the inbound cluster `local_app` of the service
/// (`local_cluster`), the pod's labels and namespace added by the scrape.
fn consul_labels(w: &Workload) -> String {
    format!(
        "envoy_cluster_name=\"local_app\",local_cluster=\"{s}\",consul_source_service=\"{s}\",namespace=\"{ns}\",app=\"{s}\",version=\"{v}\"",
        s = w.service,
        ns = w.namespace,
        v = w.version
    )
}

/// Hubble's `httpV2` metrics with `labelsContext=source_namespace,
/// destination_namespace,destination_workload`, as the server saw them.
fn hubble_labels(w: &Workload) -> String {
    format!(
        "reporter=\"server\",source_namespace=\"{ns}\",destination_namespace=\"{ns}\",destination_workload=\"{s}-{v}\"",
        s = w.service,
        ns = w.namespace,
        v = w.version
    )
}

/// A histogram of the workload's latencies; `to_ms` converts a bound of
/// `buckets` to milliseconds (1000 for seconds).
fn histogram(out: &mut String, name: &str, labels: &str, buckets: &[f64], to_ms: f64, s: &Series) {
    let w = &s.workload;
    for le in buckets {
        let mut n = 0.0;
        if w.latency_ms <= le * to_ms {
            n += s.totals.typical;
        }
        if w.tail_latency_ms <= le * to_ms {
            n += s.totals.tail;
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {n}");
    }
    let count = s.totals.typical + s.totals.tail;
    let sum = (s.totals.typical * w.latency_ms + s.totals.tail * w.tail_latency_ms) / to_ms;
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn value(text: &str, prefix: &str) -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no line starting with {prefix}"))
    }

    #[test]
    fn counters_grow_at_the_requested_rates() {
        let t0 = Instant::now();
        let mut g = Generator::new(t0);
        g.set(
            t0,
            vec![Workload::new("reviews", "bookinfo", "v3")
                .rps(100.0)
                .error_rate(0.1)],
        );
        let text = g.exposition(t0 + Duration::from_secs(10));
        let ok = value(
            &text,
            "istio_requests_total{reporter=\"destination\",destination_service_name=\"reviews\"",
        );
        assert!((ok - 900.0).abs() < 1e-6, "{ok}");
        assert!(text.contains("response_code=\"500\"} 100"), "{text}");
        assert!(text.contains("deployment=\"reviews-v3\",app=\"reviews\",version=\"v3\",tls=\"true\",classification=\"failure\",status_code=\"500\"} 100"));
    }

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let t0 = Instant::now();
        let mut g = Generator::new(t0);
        g.set(
            t0,
            vec![Workload::new("a", "ns", "v1")
                .rps(10.0)
                .latency_ms(120.0)
                .tail(0.5, 3000.0)],
        );
        let text = g.exposition(t0 + Duration::from_secs(1));
        assert!(
            text.contains("destination_version=\"v1\",le=\"100\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("destination_version=\"v1\",le=\"250\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("destination_version=\"v1\",le=\"5000\"} 10\n"),
            "{text}"
        );
        assert!(text.contains("tls=\"true\",le=\"200\"} 5\n"), "{text}");
    }

    #[test]
    fn changing_a_rate_never_resets_counters() {
        let t0 = Instant::now();
        let mut g = Generator::new(t0);
        g.set(t0, vec![Workload::new("a", "ns", "v1").rps(10.0)]);
        g.set(
            t0 + Duration::from_secs(5),
            vec![Workload::new("a", "ns", "v1").rps(0.0)],
        );
        let text = g.exposition(t0 + Duration::from_secs(50));
        assert!(text.contains("response_code=\"200\"} 50\n"), "{text}");
    }

    #[test]
    fn rejects_impossible_workloads() {
        assert!(Workload::new("a", "ns", "v1").rps(-1.0).validate().is_err());
        assert!(Workload::new("a", "ns", "v1")
            .error_rate(1.5)
            .validate()
            .is_err());
        assert!(Workload::new("a\"", "ns", "v1").validate().is_err());
        assert!(Workload::new("a", "ns", "v1").rps(3.0).validate().is_ok());
    }
}
