//! The emit stage: [`Ir`] → mesh objects, one file per mesh.
//!
//! An emitter translates; it resolves nothing (that is `lower`'s job). What
//! a mesh cannot express is an [`EmitError`] naming the intent, never
//! silently dropped. Adding a mesh is adding one file here and one arm to
//! [`emitter`].

pub mod cilium;
pub mod consul;
pub mod features;
pub mod gateway_api;
pub mod istio;
pub mod linkerd;
pub mod networkpolicy;
mod precedence;
pub mod prometheus;
pub mod smi;

use meshplan_policy_lang::intent::service::StringMatch;
use meshplan_policy_lang::intent::{Duration, Target};

use meshplan_policy_lang::intent::Protocol;

pub use features::{Feature, Support};

use crate::api::core_v1::{ServicePort, ServiceSpec};
use crate::ir::{Ir, Origin, Service};
use crate::object::MeshObject;

/// Something a mesh cannot express.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {emitter}: {message}")]
pub struct EmitError {
    pub emitter: &'static str,
    /// `namespace/name` of the intent.
    pub intent: String,
    pub file: String,
    pub line: u32,
    pub message: String,
    /// The feature, when the emitter declares it unsupported.
    pub feature: Option<Feature>,
}

impl EmitError {
    pub fn new(emitter: &'static str, origin: &Origin, message: impl Into<String>) -> Self {
        Self {
            emitter,
            intent: origin.intent.to_string(),
            file: origin.file.to_string(),
            line: origin.line,
            message: message.into(),
            feature: None,
        }
    }

    /// Located at the intent's setting of `feature`.
    pub fn of(mut self, feature: Feature) -> Self {
        self.feature = Some(feature);
        self
    }
}

/// One mesh's translation of the IR.
pub trait Emitter {
    /// The target it emits for.
    fn target(&self) -> Target;
    /// The target's name as written in meshplan.yaml.
    fn name(&self) -> &'static str {
        crate::target_name(self.target())
    }
    /// How far it expresses `feature`. Uses of what it declares
    /// unsupported are reported before [`Emitter::emit`] runs (see
    /// [`features`]); `emit` reports only the gaps of partial support.
    fn support(&self, feature: Feature) -> Support;
    /// Appends this mesh's objects to `out`; problems to `errors`.
    fn emit(&self, ir: &Ir, out: &mut Vec<MeshObject>, errors: &mut Vec<EmitError>);
    /// Whether what it emits for a namespace's services depends only on
    /// them and the IR's settings — never on services of other namespaces.
    /// Then the compiler may lower and emit a namespace at a time, holding
    /// one namespace's IR instead of the repository's; the objects are the
    /// same either way (a test renders every fixture both ways).
    fn namespace_local(&self) -> bool {
        false
    }
}

/// The emitter of a target.
pub fn emitter(target: Target) -> Box<dyn Emitter> {
    match target {
        Target::Istio => Box::new(istio::Istio),
        Target::GatewayApi => Box::new(gateway_api::GatewayApi),
        Target::Linkerd => Box::new(linkerd::Linkerd),
        Target::Consul => Box::new(consul::Consul),
        Target::Cilium => Box::new(cilium::Cilium),
        Target::NetworkPolicy => Box::new(networkpolicy::NetworkPolicy),
        Target::Smi => Box::new(smi::Smi),
    }
}

/// A rate limit as whole requests per second, for meshes that count no
/// other way; any other rate is reported.
pub(crate) fn whole_per_second(
    emitter: &'static str,
    mesh: &str,
    s: &Service,
    rl: &crate::ir::RateLimit,
    errors: &mut Vec<EmitError>,
) -> Option<u32> {
    let per = rl.per.as_secs_f64();
    let rps = f64::from(rl.requests) / per;
    if rps < 1.0 || rps.fract() != 0.0 {
        errors.push(EmitError::new(
            emitter,
            &s.origin,
            format!(
                "service `{}`: {mesh} limits whole requests per second; {} per {}s is {rps:.3}/s",
                s.key(),
                rl.requests,
                per
            ),
        ));
        return None;
    }
    Some(rps as u32)
}

/// A service's L7 ports with the name of each one's route: the service's
/// name, or `<name>-<port>` when it has several.
pub(crate) fn l7_routes(s: &Service) -> Vec<(&crate::ir::Port, String)> {
    let l7: Vec<_> = s.l7_ports().collect();
    let several = l7.len() > 1;
    l7.into_iter()
        .map(|p| {
            let name = if several {
                format!("{}-{}", s.name, p.name)
            } else {
                s.name.clone()
            };
            (p, name)
        })
        .collect()
}

/// The name of the per-version backend Service of `version`.
pub fn backend_service_name(s: &Service, version: &str) -> String {
    backend_name(&s.host, version)
}

/// The per-version backend Service of `version` of the Service `host`.
pub fn backend_name(host: &str, version: &str) -> String {
    format!("{host}-{version}")
}

/// Per-version backend Services (`<host>-<version>`), selecting each
/// version's pods: meshes that split traffic between Services (Gateway API
/// in GAMMA mode, Linkerd) route to these; `annotations` are added to each.
pub fn backend_services(
    emitter: &'static str,
    s: &Service,
    annotations: &[(&str, String)],
) -> Vec<MeshObject> {
    let ports: Vec<ServicePort<'_>> = s
        .ports
        .iter()
        .map(|p| ServicePort {
            app_protocol: match p.protocol {
                Protocol::Http => Some("http"),
                Protocol::Http2 | Protocol::Grpc => Some("kubernetes.io/h2c"),
                Protocol::Tcp => None,
            },
            name: &p.name,
            port: p.port,
            protocol: "TCP",
            target_port: p.target_port,
        })
        .collect();
    s.versions
        .iter()
        .map(|v| {
            let spec = ServiceSpec {
                ports: &ports,
                selector: v
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect(),
            };
            MeshObject::builder(
                emitter,
                "v1",
                "Service",
                &s.namespace,
                &backend_service_name(s, &v.name),
                &s.origin,
            )
            .label("meshplan.dev/version", &v.name)
            .annotations(annotations)
            .spec_typed(&spec)
            .build()
        })
        .collect()
}

/// How a precedence-based target keeps first-match order
/// (`precedence::first_match`), for its feature matrix note.
pub(crate) const ROUTE_ORDER_NOTE: &str = "first match kept by giving each route its conjunction with every more specific match after it; reported where one cannot be written (two regular expressions on one value, two cookie tests, a longer path under a path-prefix rewrite) or a rule would hold too many matches";

/// An intent path prefix as a mesh whose prefix is a plain string prefix
/// (Envoy's route `prefix`: Istio, Consul) must write it: the intent's
/// matches whole segments, `/api` matching `/api` and `/api/v1` but not
/// `/apis`, so it becomes `exact: /api` or `prefix: /api/` (`/` alone
/// stays `prefix: /`). A trailing `/` of the intent's prefix is ignored,
/// as Gateway API's `PathPrefix` ignores it.
pub(crate) fn segment_prefix(prefix: &str) -> Vec<PathBlock> {
    let bare = prefix.trim_end_matches('/');
    if bare.is_empty() {
        return vec![PathBlock::Below("/".into())];
    }
    vec![
        PathBlock::Whole(bare.into()),
        PathBlock::Below(format!("{bare}/")),
    ]
}

/// One string-prefix mesh match of a segment-wise path prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PathBlock {
    /// The prefix itself: an exact match.
    Whole(String),
    /// Below it: a string prefix ending in `/`.
    Below(String),
}

impl PathBlock {
    /// The prefix to rewrite the matched part to, so that replacing the
    /// matched string gives what replacing the matched segments gives
    /// (`/api` → `/v2`: `/api` becomes `/v2`, `/api/x` becomes `/v2/x`).
    pub(crate) fn rewrite(&self, to: &str) -> String {
        let bare = to.trim_end_matches('/');
        match self {
            PathBlock::Whole(_) if bare.is_empty() => "/".into(),
            PathBlock::Whole(_) => bare.into(),
            PathBlock::Below(_) => format!("{bare}/"),
        }
    }
}

/// A duration in protobuf JSON form (`3s`, `0.5s`), as Istio wants it.
pub fn proto_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        let s = format!("{}.{:03}", ms / 1000, ms % 1000);
        format!("{}s", s.trim_end_matches('0'))
    }
}

/// A duration in Gateway API form (GEP-2257: `1h`, `3s`, `500ms`).
pub fn gateway_duration(d: Duration) -> String {
    let ms = d.as_millis();
    match ms {
        0 => "0s".into(),
        _ if ms % 3_600_000 == 0 => format!("{}h", ms / 3_600_000),
        _ if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        _ if ms % 1000 == 0 => format!("{}s", ms / 1000),
        _ => format!("{ms}ms"),
    }
}

/// An RE2 regular expression matching a `Cookie` header that carries the
/// cookie `name` matching `m` (meshes match cookies through that header).
pub fn cookie_regex(name: &str, m: &StringMatch) -> String {
    let value = if let Some(v) = &m.exact {
        regex_escape(v)
    } else if let Some(v) = &m.prefix {
        format!("{}[^;]*", regex_escape(v))
    } else {
        format!("(?:{})", m.regex.clone().unwrap_or_default())
    };
    format!("^(?:.*;\\s*)?{}={value}(?:;.*)?$", regex_escape(name))
}

/// Escapes RE2's metacharacters, so `s` matches itself.
pub(crate) fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_each_meshs_form() {
        assert_eq!(proto_duration(Duration::from_millis(3000)), "3s");
        assert_eq!(proto_duration(Duration::from_millis(500)), "0.5s");
        assert_eq!(proto_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(gateway_duration(Duration::from_millis(500)), "500ms");
        assert_eq!(gateway_duration(Duration::from_millis(120_000)), "2m");
        assert_eq!(gateway_duration(Duration::from_millis(3_600_000)), "1h");
    }

    #[test]
    fn cookie_regexes_match_only_the_named_cookie() {
        let m = StringMatch {
            exact: Some("true".into()),
            ..StringMatch::default()
        };
        assert_eq!(cookie_regex("beta", &m), "^(?:.*;\\s*)?beta=true(?:;.*)?$");
        let p = StringMatch {
            prefix: Some("a.b".into()),
            ..StringMatch::default()
        };
        assert_eq!(cookie_regex("s", &p), "^(?:.*;\\s*)?s=a\\.b[^;]*(?:;.*)?$");
    }
}
