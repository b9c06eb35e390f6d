//! `networking.istio.io`: Istio's traffic objects. A `DestinationRule`
//! names a service's subsets (versions) and how clients connect to it
//! (TLS, load balancing, connection pool, outlier ejection); a
//! `VirtualService` routes the requests for its hosts, first match wins;
//! an `EnvoyFilter` patches the sidecar's Envoy configuration, here to add
//! Envoy's local rate limit filter. Fields in the order of their JSON
//! names (see the module above); values borrow from the IR.

use std::collections::BTreeMap;

use serde::Serialize;

use meshplan_policy_lang::intent::labels::Labels;

/// `DestinationRule` (v1).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DestinationRuleSpec<'a> {
    pub host: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<TrafficPolicy<'a>>,
}

/// A version: the pods carrying `labels`.
#[derive(Debug, Serialize)]
pub(crate) struct Subset<'a> {
    pub labels: &'a Labels,
    pub name: &'a str,
}

/// How clients reach the host; a setting left out is Istio's default.
#[derive(Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TrafficPolicy<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
}

/// `ISTIO_MUTUAL`: the sidecar's own certificates.
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct ClientTls {
    pub mode: &'static str,
}

/// A simple policy (`ROUND_ROBIN`, `LEAST_REQUEST`, `RANDOM`) or a
/// consistent hash.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoadBalancer<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub simple: Option<&'static str>,
}

/// What a request is hashed by (one of the keys), and Maglev instead of
/// the ring hash when `maglev` is present.
#[derive(Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConsistentHash<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maglev: Option<Empty>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
}

/// `{}`: a message whose defaults are wanted.
#[derive(Debug, Default, PartialEq, Serialize)]
pub(crate) struct Empty {}

/// The cookie a client is pinned by (Envoy sets it when absent).
#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct HttpCookie<'a> {
    pub name: &'a str,
    /// `0s`: a session cookie.
    pub ttl: String,
}

#[derive(Debug, Default, PartialEq, Serialize)]
pub(crate) struct ConnectionPool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpPool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpPool>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TcpPool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
}

#[derive(Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpPool {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http1_max_pending_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http2_max_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u32>,
}

/// Ejecting a host after consecutive 5xx responses.
#[derive(Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct OutlierDetection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    pub consecutive_5xx_errors: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

/// `VirtualService` (v1): `http` routes in order (first match wins), a
/// `tcp` route per tcp port.
#[derive(Debug, Serialize)]
pub(crate) struct VirtualServiceSpec<'a> {
    pub hosts: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute<'a>>,
}

/// One http route: its match blocks ORed (none: every request), then a
/// redirect, or destinations with the settings of a forwarding route.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpRoute<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    #[serde(rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<HttpMatch<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retries: Option<Retries>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<Rewrite<'a>>,
    /// Absent on a redirect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<Vec<RouteDestination<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

/// One match block: every condition in it must hold.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpMatch<'a> {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<&'a str, StringMatch<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<&'a str, StringMatch<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch<'a>>,
}

/// `{"exact": …}`, `{"prefix": …}` (a plain string prefix) or
/// `{"regex": …}` (RE2, the whole value).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum StringMatch<'a> {
    Exact(std::borrow::Cow<'a, str>),
    Prefix(std::borrow::Cow<'a, str>),
    Regex(std::borrow::Cow<'a, str>),
}

/// A destination of a route (`weight` when there are several), and the
/// headers to add to its responses.
#[derive(Debug, Serialize)]
pub(crate) struct RouteDestination<'a> {
    pub destination: Destination<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// A host, the subset of it and the port.
#[derive(Debug, Serialize)]
pub(crate) struct Destination<'a> {
    pub host: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct PortSelector {
    pub number: u32,
}

/// Header manipulation applied when this destination answers.
#[derive(Debug, Serialize)]
pub(crate) struct Headers<'a> {
    pub response: HeaderOperations<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct HeaderOperations<'a> {
    pub add: BTreeMap<&'static str, &'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Redirect<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<&'a str>,
    pub redirect_code: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<&'a str>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Rewrite<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authority: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Retries {
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<String>,
    /// Envoy's retry conditions, comma-separated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Fault {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Abort {
    pub http_status: u32,
    pub percentage: Percent,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Delay {
    pub fixed_delay: String,
    pub percentage: Percent,
}

/// A percentage of requests, 0 to 100.
#[derive(Debug, Serialize)]
pub(crate) struct Percent {
    pub value: f64,
}

/// The tcp route of one port.
#[derive(Debug, Serialize)]
pub(crate) struct TcpRoute<'a> {
    #[serde(rename = "match")]
    pub matches: [L4Match; 1],
    pub route: Vec<RouteDestination<'a>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct L4Match {
    pub port: u32,
}

/// `EnvoyFilter` (v1alpha3): patches to the Envoy configuration of the
/// workloads carrying `workloadSelector.labels`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EnvoyFilterSpec<'a> {
    pub config_patches: Vec<ConfigPatch>,
    pub workload_selector: WorkloadLabels<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct WorkloadLabels<'a> {
    pub labels: &'a Labels,
}

/// Inserts an HTTP filter into the inbound listener of one port.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ConfigPatch {
    /// `HTTP_FILTER`.
    pub apply_to: &'static str,
    #[serde(rename = "match")]
    pub matches: PatchMatch,
    pub patch: Patch,
}

#[derive(Debug, Serialize)]
pub(crate) struct PatchMatch {
    /// `SIDECAR_INBOUND`.
    pub context: &'static str,
    pub listener: ListenerMatch,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListenerMatch {
    pub filter_chain: FilterChainMatch,
    pub port_number: u32,
}

#[derive(Debug, Serialize)]
pub(crate) struct FilterChainMatch {
    pub filter: Named,
}

#[derive(Debug, Serialize)]
pub(crate) struct Named {
    pub name: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct Patch {
    /// `INSERT_BEFORE`.
    pub operation: &'static str,
    pub value: HttpFilter,
}

/// An Envoy HTTP filter: its name and its config, given as a `TypedStruct`
/// (Envoy's own field names, in snake case).
#[derive(Debug, Serialize)]
pub(crate) struct HttpFilter {
    pub name: &'static str,
    pub typed_config: TypedStruct,
}

#[derive(Debug, Serialize)]
pub(crate) struct TypedStruct {
    #[serde(rename = "@type")]
    pub type_: &'static str,
    pub type_url: &'static str,
    pub value: LocalRateLimit,
}

/// Envoy's `LocalRateLimit`: a token bucket, enabled and enforced for
/// every request.
#[derive(Debug, Serialize)]
pub(crate) struct LocalRateLimit {
    pub filter_enabled: RuntimeFraction,
    pub filter_enforced: RuntimeFraction,
    pub stat_prefix: &'static str,
    pub token_bucket: TokenBucket,
}

#[derive(Debug, Serialize)]
pub(crate) struct RuntimeFraction {
    pub default_value: Fraction,
    pub runtime_key: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct Fraction {
    /// `HUNDRED`.
    pub denominator: &'static str,
    pub numerator: u32,
}

#[derive(Debug, Serialize)]
pub(crate) struct TokenBucket {
    pub fill_interval: String,
    pub max_tokens: u32,
    pub tokens_per_fill: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sorted_keys;

    fn destination() -> Destination<'static> {
        Destination {
            host: "h".into(),
            port: Some(PortSelector { number: 80 }),
            subset: Some("v1"),
        }
    }

    fn route_destination() -> RouteDestination<'static> {
        RouteDestination {
            destination: destination(),
            headers: Some(Headers {
                response: HeaderOperations {
                    add: [("Set-Cookie", "c=1")].into(),
                },
            }),
            weight: Some(10),
        }
    }

    fn http_route() -> HttpRoute<'static> {
        let percent = || Percent { value: 5.0 };
        let sm = || StringMatch::Exact("x".into());
        HttpRoute {
            fault: Some(Fault {
                abort: Some(Abort {
                    http_status: 503,
                    percentage: percent(),
                }),
                delay: Some(Delay {
                    fixed_delay: "1s".into(),
                    percentage: percent(),
                }),
            }),
            matches: vec![HttpMatch {
                headers: [("h", sm())].into(),
                method: Some(sm()),
                query_params: [("q", sm())].into(),
                uri: Some(StringMatch::Prefix("/a".into())),
            }],
            mirror: Some(destination()),
            mirror_percentage: Some(percent()),
            name: "r",
            redirect: Some(Redirect {
                authority: Some("a"),
                redirect_code: 301,
                uri: Some("/b"),
            }),
            retries: Some(Retries {
                attempts: 3,
                per_try_timeout: Some("1s".into()),
                retry_on: Some("5xx".into()),
            }),
            rewrite: Some(Rewrite {
                authority: Some("a"),
                uri: Some("/c".into()),
            }),
            route: Some(vec![route_destination()]),
            timeout: Some("2s".into()),
        }
    }

    #[test]
    fn istio_networking_specs_serialise_with_sorted_keys() {
        let labels: Labels = [("app", "a")].into_iter().collect();
        let dr = serde_json::to_string(&DestinationRuleSpec {
            host: "h".into(),
            subsets: vec![Subset {
                labels: &labels,
                name: "v1",
            }],
            traffic_policy: Some(TrafficPolicy {
                connection_pool: Some(ConnectionPool {
                    http: Some(HttpPool {
                        http1_max_pending_requests: Some(1),
                        http2_max_requests: Some(2),
                        idle_timeout: Some("1s".into()),
                        max_requests_per_connection: Some(3),
                    }),
                    tcp: Some(TcpPool {
                        connect_timeout: Some("1s".into()),
                        max_connections: Some(4),
                    }),
                }),
                load_balancer: Some(LoadBalancer {
                    consistent_hash: Some(ConsistentHash {
                        http_cookie: Some(HttpCookie {
                            name: "c",
                            ttl: "0s".into(),
                        }),
                        http_header_name: Some("h"),
                        http_query_parameter_name: Some("q"),
                        maglev: Some(Empty {}),
                        use_source_ip: Some(true),
                    }),
                    simple: Some("RANDOM"),
                }),
                outlier_detection: Some(OutlierDetection {
                    base_ejection_time: Some("30s".into()),
                    consecutive_5xx_errors: 5,
                    interval: Some("10s".into()),
                    max_ejection_percent: Some(50),
                }),
                tls: Some(ClientTls {
                    mode: "ISTIO_MUTUAL",
                }),
            }),
        })
        .unwrap();
        let vs = serde_json::to_string(&VirtualServiceSpec {
            hosts: vec!["h".into()],
            http: vec![http_route()],
            tcp: vec![TcpRoute {
                matches: [L4Match { port: 5432 }],
                route: vec![route_destination()],
            }],
        })
        .unwrap();
        let bucket = || RuntimeFraction {
            default_value: Fraction {
                denominator: "HUNDRED",
                numerator: 100,
            },
            runtime_key: "k",
        };
        let ef = serde_json::to_string(&EnvoyFilterSpec {
            config_patches: vec![ConfigPatch {
                apply_to: "HTTP_FILTER",
                matches: PatchMatch {
                    context: "SIDECAR_INBOUND",
                    listener: ListenerMatch {
                        filter_chain: FilterChainMatch {
                            filter: Named { name: "f" },
                        },
                        port_number: 8080,
                    },
                },
                patch: Patch {
                    operation: "INSERT_BEFORE",
                    value: HttpFilter {
                        name: "n",
                        typed_config: TypedStruct {
                            type_: "t",
                            type_url: "u",
                            value: LocalRateLimit {
                                filter_enabled: bucket(),
                                filter_enforced: bucket(),
                                stat_prefix: "p",
                                token_bucket: TokenBucket {
                                    fill_interval: "1s".into(),
                                    max_tokens: 1,
                                    tokens_per_fill: 1,
                                },
                            },
                        },
                    },
                },
            }],
            workload_selector: WorkloadLabels { labels: &labels },
        })
        .unwrap();
        for t in [dr, vs, ef] {
            assert!(sorted_keys(&t), "{t}");
        }
    }
}
