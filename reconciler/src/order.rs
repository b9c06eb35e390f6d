//! The order objects are applied in, by kind: what others depend on first.
//!
//! Namespaces and CRDs; then policies and identities (a service's allow
//! list is in force before any route sends it traffic); then backends (a
//! DestinationRule's subsets and the per-version Services before the
//! routes naming them); then routes; then everything else (alerting
//! rules). Deletion runs the phases in reverse.

/// The phases, in apply order.
pub const PHASES: [&str; 5] = ["namespaces", "policies", "backends", "routes", "other"];

/// The phase of a kind (an index into [`PHASES`]).
pub fn phase(group: &str, kind: &str) -> usize {
    match (group, kind) {
        ("", "Namespace") | ("apiextensions.k8s.io", _) => 0,
        ("security.istio.io", _)
        | ("policy.linkerd.io", "Server" | "AuthorizationPolicy" | "MeshTLSAuthentication")
        | ("policy.linkerd.io", "NetworkAuthentication" | "ServerAuthorization")
        | ("networking.k8s.io", "NetworkPolicy")
        | ("cilium.io", _)
        | ("consul.hashicorp.com", "ServiceIntentions" | "ServiceDefaults") => 1,
        ("", "Service")
        | ("networking.istio.io", "DestinationRule" | "EnvoyFilter" | "ServiceEntry")
        | ("consul.hashicorp.com", "ServiceResolver") => 2,
        ("networking.istio.io", "VirtualService")
        | ("gateway.networking.k8s.io", _)
        | ("policy.linkerd.io", "HTTPRoute" | "GRPCRoute")
        | ("consul.hashicorp.com", "ServiceRouter" | "ServiceSplitter")
        | ("split.smi-spec.io", _) => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_come_before_the_routes_that_use_them() {
        assert!(
            phase("networking.istio.io", "DestinationRule")
                < phase("networking.istio.io", "VirtualService")
        );
        assert!(phase("", "Service") < phase("gateway.networking.k8s.io", "HTTPRoute"));
    }

    #[test]
    fn policies_come_before_routes() {
        assert!(
            phase("security.istio.io", "AuthorizationPolicy")
                < phase("networking.istio.io", "VirtualService")
        );
        assert!(phase("policy.linkerd.io", "Server") < phase("policy.linkerd.io", "HTTPRoute"));
    }
}
