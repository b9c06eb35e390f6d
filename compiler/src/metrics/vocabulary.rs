//! Whose metrics the queries read ([`Flavor`]) and how they tell one
//! version's requests from another's ([`Vocabulary`]): the service part of
//! a selector is the mesh's own, the version part the mesh's default or
//! the repository's `metrics.workload`.
//!
//! The defaults come from what each mesh's standard scrape writes:
//!
//! | flavour | the service | a version |
//! |---|---|---|
//! | istio | `destination_service_name`, `destination_service_namespace` (`reporter="destination"`) | `destination_version`: the pods' `service.istio.io/canonical-revision`, else `app.kubernetes.io/version`, else `version` label (the version's name when it declares none) |
//! | linkerd | `namespace` and the service's pod labels (`direction="inbound"`) | the version's pod labels |
//! | consul | `local_cluster`, `namespace` (`envoy_cluster_name="local_app"`) | the version's pod labels |
//! | hubble | `destination_namespace` (`reporter="server"`) | `destination_workload="<service>-<version>"` |
//!
//! Linkerd's and Consul's metrics carry the pod's labels as the scrape
//! copies them (linkerd-viz's and the usual `kubernetes-pods` job's
//! `labelmap`): `.`, `/` and `-` in a name become `_`, and linkerd-viz drops
//! a `linkerd_io_` (or `linkerd_io_proxy_`) prefix. No Deployment name is
//! assumed there; Hubble has no pod labels, so its workload name is, and
//! `metrics.workload` says otherwise where it differs.

use std::fmt::Write as _;

use meshplan_policy_lang::intent::config::{Config, MetricsFlavor, MetricsWorkload};

use super::{fmt_f64, GRPC_SERVER_ERRORS};
use crate::emit::regex_escape;
use meshplan_policy_lang::intent::labels::Labels;

use crate::ir::Service;

/// Whose metrics the queries read, and how they tell a version's requests
/// apart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocabulary {
    pub flavor: Flavor,
    /// `metrics.workload`: `None` is the flavour's default.
    pub workload: Option<MetricsWorkload>,
}

impl From<Flavor> for Vocabulary {
    fn from(flavor: Flavor) -> Self {
        Vocabulary {
            flavor,
            workload: None,
        }
    }
}

impl Vocabulary {
    pub fn new(flavor: Flavor, workload: Option<MetricsWorkload>) -> Self {
        Vocabulary { flavor, workload }
    }

    /// The repository's: `metrics.flavor` (or its targets') and
    /// `metrics.workload`; `None` when meshplan does not know the flavour.
    pub fn of(config: Option<&Config>) -> Option<Self> {
        let flavor = config.and_then(Config::metrics_flavor)?;
        let workload = config
            .and_then(|c| c.metrics.as_ref())
            .and_then(|m| m.workload.clone());
        Some(Vocabulary::new(flavor.into(), workload))
    }

    /// The label selector of a service's inbound traffic, optionally of
    /// one version.
    pub(crate) fn selector(&self, s: &Service, version: Option<&str>) -> String {
        let mut sel = self.flavor.service(s);
        let hubble = MetricsWorkload {
            label: "destination_workload".into(),
            name: "{{service}}-{{version}}".into(),
        };
        let named = match (&self.workload, self.flavor) {
            (Some(w), _) => Some(w),
            (None, Flavor::Hubble) => Some(&hubble),
            (None, _) => None,
        };
        match named {
            Some(w) => named_workload(&mut sel, w, s, version),
            None => self.flavor.version(&mut sel, s, version),
        }
        sel
    }
}

/// `,<label>="<name>"` of `version` (exactly: a pattern like `svc-.*`
/// would count `svc-admin`'s traffic), or of every version.
fn named_workload(sel: &mut String, w: &MetricsWorkload, s: &Service, version: Option<&str>) {
    let label = &w.label;
    let _ = match (version, s.versions.as_slice()) {
        (Some(v), _) => write!(sel, ",{label}=\"{}\"", w.name_of(&s.host, Some(v))),
        (None, []) => write!(sel, ",{label}=\"{}\"", w.name_of(&s.host, None)),
        (None, [one]) => write!(sel, ",{label}=\"{}\"", w.name_of(&s.host, Some(&one.name))),
        (None, many) => write!(
            sel,
            ",{label}=~\"{}\"",
            many.iter()
                // Escaped for the regex, then for PromQL's string (`\.`
                // is not a PromQL escape; `\\.` is).
                .map(|v| regex_escape(&w.name_of(&s.host, Some(&v.name))).replace('\\', "\\\\"))
                .collect::<Vec<_>>()
                .join("|")
        ),
    };
}

/// `,<label>="<value>"` per pod label, named as `rename` copies it.
fn pod_labels(sel: &mut String, labels: &Labels, rename: fn(&str) -> String) {
    for (k, v) in labels.iter() {
        let _ = write!(sel, ",{}=\"{}\"", rename(k), v);
    }
}

/// The version whose pods carry the labels `version` names.
fn version_labels<'s>(s: &'s Service, version: &str) -> Option<&'s Labels> {
    s.versions
        .iter()
        .find(|x| x.name == version)
        .map(|x| &x.labels)
}

/// Whose standard metrics the queries use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `istio_requests_total`, `istio_request_duration_milliseconds_bucket`.
    Istio,
    /// `response_total`, `response_latency_ms_bucket` (inbound).
    Linkerd,
    /// Consul's Envoy sidecars: `envoy_cluster_upstream_rq` and
    /// `envoy_cluster_upstream_rq_time_bucket` of the inbound cluster
    /// `local_app` (milliseconds). Envoy's stats carry the service
    /// (`local_cluster`), not the pod: a version is found by its pod
    /// labels, which the usual `kubernetes-pods` scrape job copies (`.` and
    /// `/` in their names become `_`), and `namespace` likewise.
    Consul,
    /// Cilium's Hubble (`httpV2` handler, `labelsContext` with
    /// `destination_namespace` and `destination_workload`):
    /// `hubble_http_requests_total`, `hubble_http_request_duration_seconds`
    /// (seconds) seen by the server (`reporter="server"`). Hubble has no
    /// pod labels: a version is its workload, named `<service>-<version>`
    /// (`<service>` without versions), as on Linkerd.
    Hubble,
}

impl From<MetricsFlavor> for Flavor {
    fn from(f: MetricsFlavor) -> Flavor {
        match f {
            MetricsFlavor::Istio => Flavor::Istio,
            MetricsFlavor::Linkerd => Flavor::Linkerd,
            MetricsFlavor::Consul => Flavor::Consul,
            MetricsFlavor::Hubble => Flavor::Hubble,
        }
    }
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Istio => "istio",
            Flavor::Linkerd => "linkerd",
            Flavor::Consul => "consul",
            Flavor::Hubble => "hubble",
        }
    }

    /// Whether latencies are in seconds (else milliseconds).
    pub fn in_seconds(self) -> bool {
        matches!(self, Flavor::Hubble)
    }

    /// The selector of a service's inbound traffic, every version's.
    fn service(self, s: &Service) -> String {
        match self {
            Flavor::Istio => format!(
                "reporter=\"destination\",destination_service_name=\"{}\",destination_service_namespace=\"{}\"",
                s.host, s.namespace
            ),
            // Linkerd's inbound metrics name no Service: its pods' labels do.
            Flavor::Linkerd => {
                let mut sel = format!("direction=\"inbound\",namespace=\"{}\"", s.namespace);
                pod_labels(&mut sel, &s.workload_selector, linkerd_label);
                sel
            }
            Flavor::Consul => format!(
                "envoy_cluster_name=\"local_app\",local_cluster=\"{}\",namespace=\"{}\"",
                s.host, s.namespace
            ),
            Flavor::Hubble => format!(
                "reporter=\"server\",destination_namespace=\"{}\"",
                s.namespace
            ),
        }
    }

    /// The flavour's own matchers of `version`'s requests, appended to
    /// `sel` (nothing for the whole service).
    fn version(self, sel: &mut String, s: &Service, version: Option<&str>) {
        let Some(v) = version else { return };
        match self {
            Flavor::Istio => {
                // Istio's canonical revision, in its order of precedence.
                let labels = version_labels(s, v);
                let revision = [
                    "service.istio.io/canonical-revision",
                    "app.kubernetes.io/version",
                    "version",
                ]
                .iter()
                .find_map(|k| labels.and_then(|l| l.get(k)))
                .map_or(v, String::as_str);
                let _ = write!(sel, ",destination_version=\"{revision}\"");
            }
            Flavor::Linkerd | Flavor::Consul => {
                let rename = match self {
                    Flavor::Linkerd => linkerd_label,
                    _ => prometheus_label,
                };
                if let Some(labels) = version_labels(s, v) {
                    // The service's labels are in the selector already.
                    let own: Labels = labels
                        .iter()
                        .filter(|(k, _)| {
                            self != Flavor::Linkerd || !s.workload_selector.contains_key(k)
                        })
                        .collect();
                    pod_labels(sel, &own, rename);
                }
            }
            // Named by its workload (see `Vocabulary::selector`).
            Flavor::Hubble => {}
        }
    }

    pub(super) fn requests(self) -> &'static str {
        match self {
            Flavor::Istio => "istio_requests_total",
            Flavor::Linkerd => "response_total",
            Flavor::Consul => "envoy_cluster_upstream_rq",
            Flavor::Hubble => "hubble_http_requests_total",
        }
    }

    pub(super) fn buckets(self) -> &'static str {
        match self {
            Flavor::Istio => "istio_request_duration_milliseconds_bucket",
            Flavor::Linkerd => "response_latency_ms_bucket",
            Flavor::Consul => "envoy_cluster_upstream_rq_time_bucket",
            Flavor::Hubble => "hubble_http_request_duration_seconds_bucket",
        }
    }

    /// A latency bound as this flavour's histogram writes its `le`.
    pub(super) fn le(self, ms: u64) -> String {
        if self.in_seconds() {
            fmt_f64(ms as f64 / 1000.0)
        } else {
            ms.to_string()
        }
    }

    /// The failed requests, as matchers each selecting a disjoint set of
    /// series (summed together): one set, or several when no single label
    /// matcher says "failed".
    pub(super) fn errors(self, extra_codes: &[String], grpc: bool) -> Vec<String> {
        let extra: String = extra_codes.iter().map(|c| format!("|{c}")).collect();
        match self {
            Flavor::Istio => {
                let http = format!(",response_code=~\"5..{extra}\"");
                if !grpc {
                    return vec![http];
                }
                vec![
                    http,
                    format!(",response_code!~\"5..{extra}\",grpc_response_status=~\"{GRPC_SERVER_ERRORS}\""),
                ]
            }
            // Envoy's response code of the local app, Hubble's status: no
            // gRPC status in either.
            Flavor::Consul => vec![format!(",envoy_response_code=~\"5..{extra}\"")],
            Flavor::Hubble => vec![format!(",status=~\"5..{extra}\"")],
            Flavor::Linkerd if extra.is_empty() => vec![",classification=\"failure\"".into()],
            Flavor::Linkerd => vec![
                ",classification=\"failure\"".into(),
                format!(
                    ",classification!=\"failure\",status_code=~\"{}\"",
                    &extra[1..]
                ),
            ],
        }
    }
}

/// A pod label's name as a scrape job's `labelmap` copies it: each
/// character outside `[a-zA-Z0-9_]` becomes `_`.
fn prometheus_label(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A pod label's name as linkerd-viz's scrape copies it: without
/// `linkerd.io/proxy-` or `linkerd.io/`, then as [`prometheus_label`].
fn linkerd_label(name: &str) -> String {
    let l = prometheus_label(name);
    ["linkerd_io_proxy_", "linkerd_io_"]
        .iter()
        .find_map(|p| l.strip_prefix(p))
        .map_or_else(|| l.clone(), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::lowered;

    const PORT: &str = "ports: [{ name: http, port: 80, protocol: http }]\n";

    fn selectors(v: &Vocabulary, s: &Service) -> [String; 2] {
        [v.selector(s, None), v.selector(s, Some("canary"))]
    }

    /// Linkerd's metrics carry the pods' labels, not a Deployment name
    /// meshplan would have to guess: the service by its selector, a
    /// version by its own labels, named as linkerd-viz copies them.
    #[test]
    fn linkerd_finds_a_version_by_its_pod_labels() {
        let s = lowered(&format!("{PORT}  selector: {{ app.kubernetes.io/name: web }}\n  versions:\n    - {{ name: stable, labels: {{ track: stable }} }}\n    - {{ name: canary, labels: {{ track: canary, linkerd.io/tier: b }} }}\n"));
        let [all, canary] = selectors(&Flavor::Linkerd.into(), &s);
        assert_eq!(
            all,
            "direction=\"inbound\",namespace=\"shop\",app_kubernetes_io_name=\"web\""
        );
        assert_eq!(
            canary,
            "direction=\"inbound\",namespace=\"shop\",app_kubernetes_io_name=\"web\",tier=\"b\",track=\"canary\""
        );
        assert!(!canary.contains("deployment"));
    }

    /// Istio's `destination_version` is the pods' canonical revision:
    /// `service.istio.io/canonical-revision`, else
    /// `app.kubernetes.io/version`, else `version`, never the name meshplan
    /// gave the version when a label says otherwise.
    #[test]
    fn istio_reads_the_canonical_revision_of_the_version_pods() {
        for (labels, revision) in [
            ("{ app: web, version: \"2.1\" }", "2.1"),
            ("{ app: web, version: \"2.1\", app.kubernetes.io/version: \"2.2\" }", "2.2"),
            ("{ app: web, app.kubernetes.io/version: \"2.2\", service.istio.io/canonical-revision: c }", "c"),
            ("{ app: web, track: canary }", "canary"),
        ] {
            let s = lowered(&format!("{PORT}  versions:\n    - {{ name: stable, labels: {{ app: web, track: stable }} }}\n    - {{ name: canary, labels: {labels} }}\n"));
            let [all, canary] = selectors(&Flavor::Istio.into(), &s);
            assert_eq!(all, "reporter=\"destination\",destination_service_name=\"web\",destination_service_namespace=\"shop\"");
            assert_eq!(canary, format!("{all},destination_version=\"{revision}\""), "{labels}");
        }
    }

    /// `metrics.workload` replaces the flavour's way for every flavour:
    /// the service's part stays the mesh's own.
    #[test]
    fn a_configured_workload_name_replaces_the_flavours_way() {
        let s = lowered(&format!("{PORT}  versions:\n    - {{ name: stable, labels: {{ app: web, track: stable }} }}\n    - {{ name: canary, labels: {{ app: web, track: canary }} }}\n"));
        let named = |label: &str, name: &str| MetricsWorkload {
            label: label.into(),
            name: name.into(),
        };
        let deployments = named("deployment", "{{service}}-{{version}}");
        let v = Vocabulary::new(Flavor::Linkerd, Some(deployments.clone()));
        assert_eq!(
            selectors(&v, &s),
            [
                "direction=\"inbound\",namespace=\"shop\",app=\"web\",deployment=~\"web-stable|web-canary\"".to_owned(),
                "direction=\"inbound\",namespace=\"shop\",app=\"web\",deployment=\"web-canary\"".to_owned()
            ]
        );
        let v = Vocabulary::new(
            Flavor::Hubble,
            Some(named("destination_workload", "{{version}}.web")),
        );
        assert_eq!(
            v.selector(&s, Some("canary")),
            "reporter=\"server\",destination_namespace=\"shop\",destination_workload=\"canary.web\""
        );
        // Every version: a regex, its `.` escaped as PromQL's string needs.
        assert_eq!(
            v.selector(&s, None),
            r#"reporter="server",destination_namespace="shop",destination_workload=~"stable\\.web|canary\\.web""#
        );
        // Hubble's default is the Deployment name; a service without
        // versions is the service's name.
        let plain = lowered(PORT);
        assert_eq!(
            Vocabulary::from(Flavor::Hubble).selector(&plain, None),
            "reporter=\"server\",destination_namespace=\"shop\",destination_workload=\"web\""
        );
        assert_eq!(deployments.name_of("web", None), "web");
    }

    #[test]
    fn pod_label_names_are_copied_as_the_scrapes_copy_them() {
        assert_eq!(linkerd_label("linkerd.io/proxy-deployment"), "deployment");
        assert_eq!(linkerd_label("linkerd.io/workload-ns"), "workload_ns");
        assert_eq!(
            linkerd_label("app.kubernetes.io/version"),
            "app_kubernetes_io_version"
        );
        assert_eq!(
            prometheus_label("linkerd.io/workload-ns"),
            "linkerd_io_workload_ns"
        );
    }
}
