//! One policy rule (`ingress`, `egress`, `ingressDeny`, `egressDeny`
//! items): who (L3), on which ports (L4), with which HTTP requests (L7).
//!
//! - L3: `fromEndpoints`, `fromEntities`, `fromCIDR`/`fromCIDRSet` (and
//!   their `to` forms). "An empty non-nil FromEndpoints does not select
//!   anything, nil FromEndpoints is implicitly treated as a wildcard
//!   selector if ToPorts are also specified" (CRD schema, `fromEndpoints`).
//! - Entities (<https://docs.cilium.io/en/stable/security/policy/language/>,
//!   "Entities Based"): `world` is outside the cluster, `cluster` every
//!   endpoint of the local cluster, `all` both.
//! - L4: `toPorts[].ports` (`port` a number, a range with `endPort`, or a
//!   named port; `protocol` `TCP`/`ANY`/empty match a TCP connection;
//!   "Layer 4 Examples").
//! - L7 (<https://docs.cilium.io/en/stable/security/policy/layer7/>):
//!   "A layer 7 request is permitted if at least one of the rules
//!   matches"; `method`, `path` and `host` are regular expressions matched
//!   against the whole method, path (Envoy's `:path`, the query string
//!   included) and host header; `headers` must be present (`Name` or
//!   `Name: value`); `headerMatches` must match unless a `mismatch`
//!   action is given.

use regex::Regex;
use serde_json::Value;

use super::selector::{EndpointLabels, Selector};
use crate::model::{Problem, Request};

/// Which side of the connection the rule's subject is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn key(self, field: &str) -> String {
        match self {
            Direction::Ingress => format!("from{field}"),
            Direction::Egress => format!("to{field}"),
        }
    }
}

/// The other end of the connection, as a rule sees it.
#[derive(Debug)]
pub(super) struct Peer {
    pub(super) labels: EndpointLabels,
    /// Inside the cluster (a pod), else `world`.
    pub(super) in_cluster: bool,
}

/// The destination pod's port a connection reaches.
#[derive(Debug)]
pub(super) struct Port {
    pub(super) number: u32,
    /// The Service port's name, taken as the container port's name.
    pub(super) name: Option<String>,
    /// Whether the traffic on it is HTTP (the Service port's protocol).
    pub(super) http: bool,
}

#[derive(Debug)]
enum L3 {
    /// No L3 field, `toPorts` given: every peer.
    Wildcard,
    Selectors(Vec<PeerSel>),
}

#[derive(Debug)]
enum PeerSel {
    Endpoints(Selector),
    Entity(String),
    /// A CIDR: whether it covers every address.
    Cidr(bool),
    /// A selector no pod or `world` peer of the model matches (nodes,
    /// groups, services, FQDNs).
    Never,
}

/// The L7 part of a port rule: `None` for L4 only.
pub(super) type Http = Option<Vec<HttpRule>>;

#[derive(Debug)]
struct PortRule {
    ports: Vec<PortProto>,
    http: Http,
}

#[derive(Debug)]
struct PortProto {
    /// `None`: every port (`0` or left out).
    port: Option<PortRef>,
    end: Option<u32>,
    protocol: String,
}

#[derive(Debug)]
enum PortRef {
    Number(u32),
    Name(String),
}

#[derive(Debug)]
pub(super) struct Rule {
    l3: L3,
    /// `None`: every port.
    ports: Option<Vec<PortRule>>,
    /// `authentication.mode`: `required` or `test-always-fail`.
    pub(super) auth: Option<String>,
}

impl Rule {
    /// Parses a rule of a policy in `namespace` (`None`: clusterwide).
    pub(super) fn parse(v: &Value, dir: Direction, ns: Option<&str>) -> Result<Rule, Problem> {
        let mut sels = Vec::new();
        let mut has_l3 = false;
        for (field, f) in [
            ("Endpoints", 0),
            ("Entities", 1),
            ("CIDR", 2),
            ("CIDRSet", 3),
            ("Nodes", 4),
            ("Groups", 4),
            ("Services", 4),
            ("FQDNs", 4),
        ] {
            let key = dir.key(field);
            let Some(items) = v.get(&key).filter(|x| !x.is_null()) else {
                continue;
            };
            has_l3 = true;
            for item in items
                .as_array()
                .ok_or_else(|| Problem::invalid(format!("{key} must be a list")))?
            {
                sels.push(match f {
                    0 => PeerSel::Endpoints(
                        Selector::parse(item)
                            .map_err(|p| p.at(&key))?
                            .scoped(ns, false),
                    ),
                    1 => PeerSel::Entity(entity(item)?),
                    2 => PeerSel::Cidr(item.as_str().is_some_and(|c| c.ends_with("/0"))),
                    3 => PeerSel::Cidr(
                        item.get("cidr")
                            .and_then(Value::as_str)
                            .is_some_and(|c| c.ends_with("/0"))
                            && item
                                .get("except")
                                .and_then(Value::as_array)
                                .is_none_or(|e| e.is_empty()),
                    ),
                    _ => PeerSel::Never,
                });
            }
        }
        if v.get(dir.key("Requires")).is_some_and(|x| !x.is_null()) {
            return Err(Problem::unmodelled(format!(
                "{} (deprecated) is not modelled",
                dir.key("Requires")
            )));
        }
        let icmps = v.get("icmps").is_some_and(|x| !x.is_null());
        let ports = match v.get("toPorts").filter(|x| !x.is_null()) {
            Some(p) => Some(
                p.as_array()
                    .ok_or_else(|| Problem::invalid("toPorts must be a list"))?
                    .iter()
                    .map(PortRule::parse)
                    .collect::<Result<Vec<_>, _>>()?,
            ),
            // ICMP only: no TCP port.
            None if icmps => Some(Vec::new()),
            None => None,
        };
        let l3 = match (has_l3, &ports) {
            (false, Some(_)) => L3::Wildcard,
            _ => L3::Selectors(sels),
        };
        let auth = match v.get("authentication").and_then(|a| a.get("mode")) {
            None | Some(Value::Null) => None,
            Some(Value::String(m)) if m == "disabled" => None,
            Some(Value::String(m)) if m == "required" || m == "test-always-fail" => Some(m.clone()),
            Some(m) => return Err(Problem::invalid(format!("unknown authentication mode {m}"))),
        };
        Ok(Rule { l3, ports, auth })
    }

    pub(super) fn selects(&self, peer: &Peer) -> bool {
        match &self.l3 {
            L3::Wildcard => true,
            L3::Selectors(sels) => sels.iter().any(|s| match s {
                PeerSel::Endpoints(sel) => sel.matches(&peer.labels),
                PeerSel::Entity(e) => match e.as_str() {
                    "all" => true,
                    "world" => !peer.in_cluster,
                    "cluster" => peer.in_cluster,
                    _ => false,
                },
                PeerSel::Cidr(everything) => *everything && !peer.in_cluster,
                PeerSel::Never => false,
            }),
        }
    }

    /// The rule's L7 part on `port` when it admits the port: `Some(None)`
    /// for L4 only, `Some(Some(rules))` with HTTP rules.
    pub(super) fn on_port(&self, port: &Port) -> Option<&Http> {
        static NONE: Http = None;
        let Some(rules) = &self.ports else {
            return Some(&NONE);
        };
        rules
            .iter()
            .find(|r| r.ports.iter().any(|p| p.matches(port)))
            .map(|r| &r.http)
    }
}

fn entity(v: &Value) -> Result<String, Problem> {
    const KNOWN: &[&str] = &[
        "all",
        "world",
        "cluster",
        "host",
        "init",
        "ingress",
        "unmanaged",
        "remote-node",
        "health",
        "none",
        "kube-apiserver",
    ];
    match v.as_str() {
        Some(e) if KNOWN.contains(&e) => Ok(e.to_owned()),
        _ => Err(Problem::invalid(format!("unknown entity {v}"))),
    }
}

impl PortRule {
    fn parse(v: &Value) -> Result<PortRule, Problem> {
        let ports = match v.get("ports") {
            None | Some(Value::Null) => vec![PortProto {
                port: None,
                end: None,
                protocol: String::new(),
            }],
            Some(p) => p
                .as_array()
                .ok_or_else(|| Problem::invalid("ports must be a list"))?
                .iter()
                .map(PortProto::parse)
                .collect::<Result<_, _>>()?,
        };
        let rules = v.get("rules").filter(|r| !r.is_null());
        let http = match rules.and_then(|r| r.get("http")).filter(|h| !h.is_null()) {
            Some(h) => Some(
                h.as_array()
                    .ok_or_else(|| Problem::invalid("rules.http must be a list"))?
                    .iter()
                    .map(HttpRule::parse)
                    .collect::<Result<Vec<_>, _>>()?,
            )
            // "If no rules are specified, then all traffic is permitted."
            .filter(|h| !h.is_empty()),
            None => None,
        };
        if let Some(other) = rules
            .and_then(Value::as_object)
            .and_then(|r| r.keys().find(|k| *k != "http"))
        {
            return Err(Problem::unmodelled(format!(
                "rules.{other} is not modelled"
            )));
        }
        Ok(PortRule { ports, http })
    }
}

impl PortProto {
    fn parse(v: &Value) -> Result<PortProto, Problem> {
        let port = match v.get("port") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match s.parse::<u32>() {
                Ok(0) => None,
                Ok(n) => Some(PortRef::Number(n)),
                Err(_) if s.is_empty() => None,
                Err(_) => Some(PortRef::Name(s.clone())),
            },
            Some(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                Some(0) => None,
                Some(n) => Some(PortRef::Number(n)),
                None => return Err(Problem::invalid(format!("bad port {n}"))),
            },
        };
        let end = v
            .get("endPort")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok());
        let protocol = v
            .get("protocol")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        Ok(PortProto {
            port,
            end,
            protocol,
        })
    }

    fn matches(&self, port: &Port) -> bool {
        matches!(
            self.protocol.to_ascii_uppercase().as_str(),
            "" | "TCP" | "ANY"
        ) && match &self.port {
            None => true,
            Some(PortRef::Number(n)) => {
                (*n..=self.end.unwrap_or(*n).max(*n)).contains(&port.number)
            }
            Some(PortRef::Name(name)) => port.name.as_deref() == Some(name.as_str()),
        }
    }
}

#[derive(Debug)]
pub(super) struct HttpRule {
    method: Option<Regex>,
    path: Option<Regex>,
    host: Option<Regex>,
    /// Headers that must be present, with a value when given.
    headers: Vec<(String, Option<String>)>,
    /// `headerMatches`: name, value, whether a mismatch only triggers an
    /// action (and so still admits).
    matches: Vec<(String, String, bool)>,
}

/// A regular expression matched against the whole value.
fn full(v: Option<&Value>, what: &str) -> Result<Option<Regex>, Problem> {
    match v.and_then(Value::as_str).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(re) => Regex::new(&format!("^(?:{re})$"))
            .map(Some)
            .map_err(|e| Problem::regex(what, e)),
    }
}

impl HttpRule {
    fn parse(v: &Value) -> Result<HttpRule, Problem> {
        let headers = v
            .get("headers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(|h| match h.split_once(':') {
                        Some((k, val)) => {
                            (k.trim().to_ascii_lowercase(), Some(val.trim().to_owned()))
                        }
                        None => (h.trim().to_ascii_lowercase(), None),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut matches = Vec::new();
        for m in v
            .get("headerMatches")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if m.get("secret").is_some_and(|s| !s.is_null()) {
                return Err(Problem::unmodelled(
                    "headerMatches from secrets are not modelled",
                ));
            }
            let name = m
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| Problem::invalid("headerMatches.name"))?;
            let value = m.get("value").and_then(Value::as_str).unwrap_or_default();
            let lenient = m.get("mismatch").is_some_and(|x| !x.is_null());
            matches.push((name.to_ascii_lowercase(), value.to_owned(), lenient));
        }
        Ok(HttpRule {
            method: full(v.get("method"), "method")?,
            path: full(v.get("path"), "path")?,
            host: full(v.get("host"), "host")?,
            headers,
            matches,
        })
    }

    pub(super) fn admits(&self, r: &Request) -> bool {
        let mut path = r.path.clone();
        if !r.query.is_empty() {
            let q: Vec<String> = r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
            path = format!("{path}?{}", q.join("&"));
        }
        let host = r
            .headers
            .get("host")
            .or_else(|| r.headers.get(":authority"));
        self.method.as_ref().is_none_or(|m| m.is_match(&r.method))
            && self.path.as_ref().is_none_or(|p| p.is_match(&path))
            && self
                .host
                .as_ref()
                .is_none_or(|h| host.is_some_and(|x| h.is_match(x)))
            && self
                .headers
                .iter()
                .all(|(k, v)| match (r.headers.get(k), v) {
                    (Some(got), Some(want)) => got == want,
                    (got, None) => got.is_some(),
                    (None, Some(_)) => false,
                })
            && self
                .matches
                .iter()
                .all(|(k, v, lenient)| *lenient || r.headers.get(k) == Some(v))
    }
}
