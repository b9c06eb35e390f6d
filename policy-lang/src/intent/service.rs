//! `ServiceIntent`: one per service — its ports, versions, routing,
//! resilience, faults, mirroring, rate limit and mTLS mode, plus the
//! `rollout`, `access` and `slos` blocks (their own modules).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::access::Access;
use super::duration::Duration;
use super::rollout::Rollout;
use super::slo::Slo;

/// What a service is and how traffic to it should behave.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceSpec {
    /// The Kubernetes Service name, when it differs from `metadata.name`.
    #[serde(default)]
    #[schemars(regex(pattern = crate::intent::DNS_LABEL), length(max = 63))]
    pub service: Option<String>,
    /// The ServiceAccount the service's pods run as: its mesh identity.
    /// Defaults to the service name.
    #[serde(default)]
    pub service_account: Option<String>,
    /// Pod labels that select every pod of this service and no pod of
    /// another: the selector of its authorization, mTLS, Server and network
    /// policies. Each version's pods carry these and the version's own
    /// labels. Defaults to the labels every version shares (`app: <service>`
    /// when they share none); `check` refuses a selector that may also
    /// select another service's pods (MP2013).
    #[serde(default)]
    pub selector: Option<super::labels::Labels>,
    /// The ports the service listens on.
    pub ports: Vec<Port>,
    /// The deployed versions, each selected by pod labels.
    #[serde(default)]
    pub versions: Vec<Version>,
    /// The version that takes all traffic no route or rollout sends
    /// elsewhere. Defaults to the first version.
    #[serde(default)]
    pub default_version: Option<String>,
    /// Routing rules, tried in order; the first match wins.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Timeouts, retries, circuit breaking, connection pool, load balancing.
    #[serde(default)]
    pub resilience: Option<Resilience>,
    /// Fault injection, for testing resilience.
    #[serde(default)]
    pub faults: Option<Faults>,
    /// Copy a share of the traffic to another version; responses are dropped.
    #[serde(default)]
    pub mirror: Option<Mirror>,
    /// A local rate limit on each of the service's pods.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Mutual TLS for traffic *to* this service. Defaults to the
    /// repository's `defaults.mtls` (strict unless set).
    #[serde(default)]
    pub mtls: Option<MtlsMode>,
    /// Progressive delivery of a new version.
    #[serde(default)]
    pub rollout: Option<Rollout>,
    /// Zero-trust allow list of who may call this service.
    #[serde(default)]
    pub access: Option<Access>,
    /// Service level objectives.
    #[serde(default)]
    pub slos: Vec<Slo>,
}

/// A port the service listens on.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// A name for the port (a DNS label), used by allow lists and routes.
    #[schemars(regex(pattern = crate::intent::DNS_LABEL), length(max = 63))]
    pub name: String,
    /// The service port.
    #[schemars(range(min = 1, max = 65535))]
    pub port: u32,
    /// The container port, when it differs from `port`.
    #[serde(default)]
    pub target_port: Option<u32>,
    /// The application protocol.
    pub protocol: Protocol,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Tcp,
}

impl Protocol {
    /// Whether the mesh sees requests (routes, retries, methods, paths).
    pub fn is_l7(self) -> bool {
        !matches!(self, Protocol::Tcp)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
        }
    }
}

/// A deployed version of the service.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Version {
    /// The version's name (a DNS label): `v1`, `stable`, `canary`.
    #[schemars(regex(pattern = crate::intent::DNS_LABEL), length(max = 63))]
    pub name: String,
    /// Pod labels selecting this version's pods.
    pub labels: super::labels::Labels,
}

/// A routing rule: requests matching `match` go to `destination`, or are
/// redirected.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    /// A name for the route (a DNS label).
    #[schemars(regex(pattern = crate::intent::DNS_LABEL), length(max = 63))]
    pub name: String,
    /// Conditions; the route applies when any one of them matches (each
    /// item's conditions must all hold). Empty matches every request.
    #[serde(default, rename = "match")]
    pub matches: Vec<Match>,
    /// Where matching requests go. Exactly one of `destination` and
    /// `redirect`.
    #[serde(default)]
    pub destination: Option<Destination>,
    /// Answer matching requests with a redirect.
    #[serde(default)]
    pub redirect: Option<Redirect>,
    /// Rewrite the request before forwarding it.
    #[serde(default)]
    pub rewrite: Option<Rewrite>,
    /// Overrides the service's timeout for this route.
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Fault injection for this route's requests only (instead of the
    /// service's `faults`).
    #[serde(default)]
    pub faults: Option<Faults>,
    /// Copy this route's requests (instead of the service's `mirror`).
    #[serde(default)]
    pub mirror: Option<Mirror>,
}

/// Request conditions that must all hold.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    /// Request headers (names in lower case).
    #[serde(default)]
    pub headers: BTreeMap<String, StringMatch>,
    /// Cookies, by name.
    #[serde(default)]
    pub cookies: BTreeMap<String, StringMatch>,
    /// The request path.
    #[serde(default)]
    pub path: Option<StringMatch>,
    /// The HTTP method.
    #[serde(default)]
    pub method: Option<String>,
    /// Query parameters.
    #[serde(default)]
    pub query_params: BTreeMap<String, StringMatch>,
}

/// How a string is matched: exactly one of `exact`, `prefix`, `regex`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StringMatch {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    /// An RE2 regular expression matching the whole value.
    #[serde(default)]
    pub regex: Option<String>,
}

/// Where a route sends requests: one version, several with weights, or
/// another service of the repository.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// All matching requests go to this version.
    #[serde(default)]
    pub version: Option<String>,
    /// Or split them: weights are percentages and must sum to 100.
    #[serde(default)]
    pub weights: Vec<WeightedVersion>,
    /// Or send them to another service of the repository (`name`, or
    /// `namespace/name`), which answers them through its default route
    /// (its default version, or its rollout's weights); its own routes do
    /// not apply, and its allow list decides whether the caller gets in.
    #[serde(default)]
    pub service: Option<String>,
    /// The port of `service` (number or name); needed only when that
    /// service has more than one http, http2 or grpc port.
    #[serde(default)]
    pub port: Option<super::PortRef>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WeightedVersion {
    pub version: String,
    /// Percentage of requests, 0–100.
    pub weight: u32,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Redirect {
    /// Replace the path.
    #[serde(default)]
    pub path: Option<String>,
    /// Replace the host (authority).
    #[serde(default)]
    pub host: Option<String>,
    /// The status code: 301, 302, 303, 307 or 308. Defaults to 302.
    #[serde(default)]
    pub code: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rewrite {
    /// Replace the matched path prefix with this one.
    #[serde(default)]
    pub path_prefix: Option<String>,
    /// Replace the host (authority) header.
    #[serde(default)]
    pub host: Option<String>,
}

/// Timeouts, retries and protection against failing backends.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resilience {
    /// The whole request's timeout, retries included.
    #[serde(default)]
    pub timeout: Option<Duration>,
    #[serde(default)]
    pub retries: Option<Retries>,
    /// Outlier detection: eject backends that keep failing.
    #[serde(default)]
    pub circuit_breaker: Option<CircuitBreaker>,
    #[serde(default)]
    pub connection_pool: Option<ConnectionPool>,
    #[serde(default)]
    pub load_balancer: Option<LoadBalancer>,
    /// Where requests go, in order, when none of the service's own
    /// endpoints is healthy: another service, a cluster peer, or a
    /// datacenter (Consul's failover).
    #[serde(default)]
    pub failover: Vec<FailoverTarget>,
}

/// One failover target: at least one of `service`, `peer`, `datacenter`
/// (together: that service in that peer or datacenter).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailoverTarget {
    /// A service (`name` or `namespace/name`; default: this service).
    #[serde(default)]
    pub service: Option<String>,
    /// A cluster peer.
    #[serde(default)]
    pub peer: Option<String>,
    /// A datacenter.
    #[serde(default)]
    pub datacenter: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    /// Retries after the first try (0 disables retries).
    pub attempts: u32,
    /// Timeout of each try.
    #[serde(default)]
    pub per_try_timeout: Option<Duration>,
    /// When to retry.
    #[serde(default)]
    pub retry_on: Vec<RetryOn>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RetryOn {
    /// Any 5xx response.
    #[serde(rename = "5xx")]
    ServerError,
    /// 502, 503 and 504.
    GatewayError,
    /// The connection was reset.
    Reset,
    /// The connection could not be made.
    ConnectFailure,
    /// 409 and other retriable 4xx.
    #[serde(rename = "retriable-4xx")]
    Retriable4xx,
    /// The backend refused the stream (HTTP/2 REFUSED_STREAM).
    RefusedStream,
    /// gRPC `UNAVAILABLE`.
    Unavailable,
    /// gRPC `CANCELLED`.
    Cancelled,
    /// gRPC `DEADLINE_EXCEEDED`.
    DeadlineExceeded,
    /// gRPC `RESOURCE_EXHAUSTED`.
    ResourceExhausted,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Consecutive 5xx (or connection errors) before a backend is ejected.
    pub consecutive_errors: u32,
    /// How often backends are scanned.
    #[serde(default)]
    pub interval: Option<Duration>,
    /// How long an ejected backend stays out (grows with each ejection).
    #[serde(default)]
    pub base_ejection_time: Option<Duration>,
    /// At most this percentage of backends ejected at once.
    #[serde(default)]
    pub max_ejection_percent: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPool {
    /// Maximum connections to the service (TCP and HTTP/1).
    #[serde(default)]
    pub max_connections: Option<u32>,
    /// Maximum requests waiting for a connection.
    #[serde(default)]
    pub max_pending_requests: Option<u32>,
    /// Maximum concurrent requests (HTTP/2).
    #[serde(default)]
    pub max_requests: Option<u32>,
    /// Requests per connection before it is closed (1 disables keep-alive).
    #[serde(default)]
    pub max_requests_per_connection: Option<u32>,
    /// TCP connect timeout.
    #[serde(default)]
    pub connect_timeout: Option<Duration>,
    /// Close connections idle this long.
    #[serde(default)]
    pub idle_timeout: Option<Duration>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    pub policy: LoadBalancerPolicy,
    /// For `consistentHash`: what requests are hashed on (session affinity).
    #[serde(default)]
    pub consistent_hash: Option<ConsistentHash>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancerPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    ConsistentHash,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum HashAlgorithm {
    RingHash,
    Maglev,
}

/// Session affinity: exactly one of `header`, `cookie`, `sourceIp`,
/// `queryParam`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHash {
    /// The hashing algorithm: `ringHash` (default) or `maglev` (faster
    /// lookups, less memory, less stable when backends change).
    #[serde(default)]
    pub algorithm: Option<HashAlgorithm>,
    #[serde(default)]
    pub header: Option<String>,
    #[serde(default)]
    pub cookie: Option<HashCookie>,
    #[serde(default)]
    pub source_ip: Option<bool>,
    #[serde(default)]
    pub query_param: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashCookie {
    pub name: String,
    /// Lifetime of a cookie the mesh sets when the request has none.
    #[serde(default)]
    pub ttl: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub delay: Option<DelayFault>,
    #[serde(default)]
    pub abort: Option<AbortFault>,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DelayFault {
    /// Percentage of requests delayed (0–100, fractions allowed).
    pub percentage: f64,
    pub delay: Duration,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortFault {
    /// Percentage of requests aborted (0–100, fractions allowed).
    pub percentage: f64,
    /// The HTTP status returned.
    pub http_status: u32,
}

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mirror {
    /// The version receiving the copies.
    pub version: String,
    /// Percentage of requests copied (0–100). Defaults to 100.
    #[serde(default)]
    pub percentage: Option<f64>,
}

/// A token bucket per pod: `requests` per `per`, bursting up to `burst`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    /// Bucket size; defaults to `requests`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Limit only these ports (names); default all http ports.
    #[serde(default)]
    pub ports: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MtlsMode {
    /// Only mutual-TLS traffic is accepted.
    Strict,
    /// Both mutual-TLS and plain-text traffic are accepted (migration).
    Permissive,
    /// meshplan renders nothing for mTLS: the mesh's own configuration (a
    /// namespace- or mesh-wide PeerAuthentication, Consul's defaults)
    /// decides.
    Unmanaged,
}
