//! `consul.hashicorp.com`: Consul's config entries as consul-k8s CRDs
//! (v1alpha1), each named after the service it configures —
//! `ServiceDefaults` (the service's protocol, mTLS mode, inbound limits and
//! what its proxy asks of its upstreams), the discovery chain that decides
//! where a request to it goes (`ServiceRouter`, then `ServiceSplitter`,
//! then `ServiceResolver`), and `ServiceIntentions` (which sources may call
//! it). Field names and meanings as consul-k8s's CRDs declare them; fields
//! in the order of their JSON names (see the module above).

use std::collections::BTreeMap;

use serde::Serialize;

/// `ServiceDefaults`: settings of the service itself, and of its calls to
/// the upstreams named in `upstreamConfig`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceDefaultsSpec<'a> {
    /// How long the service's own proxy waits for a request (Consul's
    /// default is 15 s).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_request_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_inbound_connections: Option<u32>,
    /// `strict`, `permissive`.
    #[serde(rename = "mutualTLSMode", skip_serializing_if = "Option::is_none")]
    pub mutual_tls_mode: Option<&'static str>,
    /// `http`, `http2`, `grpc`, `tcp`.
    pub protocol: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limits: Option<RateLimits>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_config: Option<UpstreamConfig<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RateLimits {
    pub instance_level: InstanceLevelRateLimit,
}

/// A limit per instance of the service, on all of its requests.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InstanceLevelRateLimit {
    pub requests_max_burst: u32,
    pub requests_per_second: u32,
}

#[derive(Debug, Serialize)]
pub(crate) struct UpstreamConfig<'a> {
    pub overrides: Vec<&'a UpstreamOverride<'a>>,
}

/// How the service's proxy treats one upstream: circuit breaking
/// (`passiveHealthCheck`) and connection limits are set by each caller,
/// not by the upstream.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpstreamOverride<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<UpstreamLimits>,
    /// The upstream's Consul service name.
    pub name: &'a str,
    /// Only with Consul namespaces (Enterprise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passive_health_check: Option<PassiveHealthCheck>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UpstreamLimits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
}

/// Outlier detection: an instance failing `maxFailures` times in a row is
/// ejected for a while. Durations in Go's form (`10s`, `1m`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PassiveHealthCheck {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// The percentage of such outliers actually ejected.
    pub enforcing_consecutive5xx: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    pub max_failures: u32,
}

/// `ServiceResolver`: the service's subsets and how an instance of the
/// chosen one is picked, or where to go when none is healthy.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceResolverSpec<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// The subset of requests that name none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_subset: Option<&'a str>,
    /// Per subset (`*`: any), the targets to fail over to, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<BTreeMap<&'static str, Failover<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subsets: Option<BTreeMap<&'a str, Subset>>,
}

/// The instances of a subset: a filter expression on the catalog's
/// service instances (`Service.Meta.version == "v1"`).
#[derive(Debug, Serialize)]
pub(crate) struct Subset {
    pub filter: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct Failover<'a> {
    pub targets: Vec<FailoverTarget<'a>>,
}

/// Another service, peer or datacenter (any combination).
#[derive(Debug, Default, Serialize)]
pub(crate) struct FailoverTarget<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datacenter: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LoadBalancer<'a> {
    /// What a `ring_hash` or `maglev` balancer hashes, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_policies: Option<Vec<HashPolicy<'a>>>,
    /// `round_robin`, `least_request`, `random`, `ring_hash`, `maglev`.
    pub policy: &'static str,
}

/// A header, cookie or query parameter by name (`field`, `fieldValue`),
/// or the caller's address (`sourceIP`).
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HashPolicy<'a> {
    /// For a cookie: set one with this lifetime when the request has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<CookieConfig>,
    /// `header`, `cookie`, `query_parameter`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_value: Option<&'a str>,
    #[serde(rename = "sourceIP", skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<bool>,
}

#[derive(Debug, Serialize)]
pub(crate) struct CookieConfig {
    pub ttl: String,
}

/// `ServiceSplitter`: the share of the service's requests per subset.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceSplitterSpec<'a> {
    pub splits: Vec<Split<'a>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Split<'a> {
    /// Headers added to the responses of this split's requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<HeaderModifiers<'a>>,
    pub service_subset: &'a str,
    pub weight: u32,
}

#[derive(Debug, Serialize)]
pub(crate) struct HeaderModifiers<'a> {
    pub add: BTreeMap<&'static str, &'a str>,
}

/// `ServiceRouter`: the service's routes, the first whose match holds
/// taking the request; one matching none goes on to the splitter.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceRouterSpec<'a> {
    pub routes: Vec<Route<'a>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Route<'a> {
    pub destination: Destination<'a>,
    #[serde(rename = "match")]
    pub route_match: RouteMatch<'a>,
}

#[derive(Debug, Serialize)]
pub(crate) struct RouteMatch<'a> {
    pub http: HttpMatch<'a>,
}

/// Conditions on a request, all of which hold (at most one on the path).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct HttpMatch<'a> {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub header: Vec<ValueMatch<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<String>,
    /// A plain string prefix (Envoy's), not a path segment's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_regex: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub query_param: Vec<ValueMatch<'a>>,
}

/// A header or query parameter by name: its value exactly, by prefix
/// (headers only) or by regular expression.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct ValueMatch<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<&'a str>,
    pub name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

/// Where a route sends its requests: a subset of this service, another
/// service, or (neither) on to this service's splitter; and how.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Destination<'a> {
    /// Only with Consul namespaces (Enterprise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    /// What replaces the matched path prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix_rewrite: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,
    /// Envoy's conditions: `5xx`, `connect-failure`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_subset: Option<&'a str>,
}

/// `ServiceIntentions`: the sources allowed (or denied) to call the
/// destination service; the most precise source naming a caller decides.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceIntentionsSpec<'a> {
    pub destination: IntentionDestination<'a>,
    pub sources: Vec<SourceIntention<'a>>,
}

#[derive(Debug, Serialize)]
pub(crate) struct IntentionDestination<'a> {
    pub name: &'a str,
}

/// A source by Consul service name (`*`: any), with either an `action`
/// for all its requests or L7 `permissions`, the first matching deciding.
#[derive(Debug, Serialize)]
pub(crate) struct SourceIntention<'a> {
    /// `allow`, `deny`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<&'static str>,
    pub name: &'a str,
    /// Only with Consul namespaces (Enterprise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<Permission<'a>>>,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Permission<'a> {
    /// `allow`, `deny`.
    pub action: &'static str,
    pub http: PermissionHttp<'a>,
}

/// The requests a permission covers (`{}`: all of them).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PermissionHttp<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub methods: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_exact: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<&'a str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sorted_keys;

    /// Every struct, every optional field set: serde writes the keys
    /// sorted, so the body is the canonical text.
    #[test]
    fn every_spec_serialises_with_sorted_keys() {
        let upstream = UpstreamOverride {
            limits: Some(UpstreamLimits {
                max_concurrent_requests: Some(10),
                max_pending_requests: Some(5),
            }),
            name: "db",
            namespace: Some("shop"),
            passive_health_check: Some(PassiveHealthCheck {
                base_ejection_time: Some("30s".into()),
                enforcing_consecutive5xx: 100,
                interval: Some("10s".into()),
                max_ejection_percent: Some(50),
                max_failures: 5,
            }),
        };
        let value = |name| ValueMatch {
            exact: Some("a"),
            name,
            prefix: Some("b"),
            regex: Some("c".into()),
        };
        let methods = ["GET".to_string()];
        let texts = [
            serde_json::to_string(&ServiceDefaultsSpec {
                local_request_timeout_ms: Some(30_000),
                max_inbound_connections: Some(100),
                mutual_tls_mode: Some("strict"),
                protocol: "http",
                rate_limits: Some(RateLimits {
                    instance_level: InstanceLevelRateLimit {
                        requests_max_burst: 20,
                        requests_per_second: 10,
                    },
                }),
                upstream_config: Some(UpstreamConfig {
                    overrides: vec![&upstream],
                }),
            }),
            serde_json::to_string(&ServiceResolverSpec {
                connect_timeout: Some("5s".into()),
                default_subset: Some("v1"),
                failover: Some(BTreeMap::from([(
                    "*",
                    Failover {
                        targets: vec![FailoverTarget {
                            datacenter: Some("dc2"),
                            namespace: Some("shop"),
                            peer: Some("west"),
                            service: Some("web"),
                        }],
                    },
                )])),
                load_balancer: Some(LoadBalancer {
                    hash_policies: Some(vec![HashPolicy {
                        cookie_config: Some(CookieConfig { ttl: "1h".into() }),
                        field: Some("cookie"),
                        field_value: Some("session"),
                        source_ip: Some(true),
                    }]),
                    policy: "ring_hash",
                }),
                subsets: Some(BTreeMap::from([
                    ("v2", Subset { filter: "b".into() }),
                    ("v1", Subset { filter: "a".into() }),
                ])),
            }),
            serde_json::to_string(&ServiceSplitterSpec {
                splits: vec![Split {
                    response_headers: Some(HeaderModifiers {
                        add: BTreeMap::from([("Set-Cookie", "canary=1")]),
                    }),
                    service_subset: "v1",
                    weight: 100,
                }],
            }),
            serde_json::to_string(&ServiceRouterSpec {
                routes: vec![Route {
                    destination: Destination {
                        namespace: Some("shop"),
                        num_retries: Some(2),
                        prefix_rewrite: Some("/".into()),
                        request_timeout: Some("2s".into()),
                        retry_on: Some(vec!["5xx"]),
                        service: Some("web"),
                        service_subset: Some("v1"),
                    },
                    route_match: RouteMatch {
                        http: HttpMatch {
                            header: vec![value("x-user")],
                            methods: vec!["GET"],
                            path_exact: Some("/a".into()),
                            path_prefix: Some("/b/".into()),
                            path_regex: Some("/c.*".into()),
                            query_param: vec![value("q")],
                        },
                    },
                }],
            }),
            serde_json::to_string(&ServiceIntentionsSpec {
                destination: IntentionDestination { name: "web" },
                sources: vec![SourceIntention {
                    action: Some("allow"),
                    name: "*",
                    namespace: Some("*"),
                    permissions: Some(vec![Permission {
                        action: "allow",
                        http: PermissionHttp {
                            methods: &methods,
                            path_exact: Some("/a"),
                            path_prefix: Some("/b"),
                        },
                    }]),
                }],
            }),
        ];
        for t in texts {
            let t = t.unwrap();
            assert!(sorted_keys(&t), "{t}");
        }
    }
}
