//! Typed specs of the objects meshplan emits, one module per API group
//! (as linkerd2's `policy-controller/k8s/api` declares its CRDs): an
//! emitter fills a struct, and serde writes it.
//!
//! Every struct declares its fields in the order of their JSON names, and
//! every map is a `BTreeMap`: serialised, a spec's keys are sorted, so the
//! body's text *is* the canonical text its content hash is taken of — no
//! second text written beside it by hand, and a misspelt field is a
//! compile error, not a schema-test failure. [`sorted_keys`] holds each
//! struct to that order in tests (and `spec_typed` in debug builds).
//!
//! Every spec meshplan emits is typed here: `cilium.io` ([`cilium_io`]),
//! `consul.hashicorp.com` ([`consul_hashicorp_com`]), the core group's
//! backend Services ([`core_v1`]), Gateway API's routes
//! (`gateway.networking.k8s.io`, [`gateway_networking_k8s_io`]), the
//! Prometheus Operator's `monitoring.coreos.com`
//! ([`monitoring_coreos_com`]), Istio's `networking.istio.io`
//! ([`networking_istio_io`]) and `security.istio.io`
//! ([`security_istio_io`]), `networking.k8s.io` ([`networking_k8s_io`]),
//! `policy.linkerd.io` ([`policy_linkerd_io`]) and SMI's
//! `split.smi-spec.io` ([`split_smi_spec_io`]).

pub(crate) mod cilium_io;
pub(crate) mod consul_hashicorp_com;
pub(crate) mod core_v1;
pub(crate) mod gateway_networking_k8s_io;
pub(crate) mod monitoring_coreos_com;
pub(crate) mod networking_istio_io;
pub(crate) mod networking_k8s_io;
pub(crate) mod policy_linkerd_io;
pub(crate) mod security_istio_io;
pub(crate) mod split_smi_spec_io;

use serde_json::Value;

/// Whether every map in `text` (compact JSON) has its keys in order.
pub(crate) fn sorted_keys(text: &str) -> bool {
    fn sorted(v: &Value) -> bool {
        match v {
            Value::Object(m) => {
                m.keys().zip(m.keys().skip(1)).all(|(a, b)| a < b) && m.values().all(sorted)
            }
            Value::Array(items) => items.iter().all(sorted),
            _ => true,
        }
    }
    serde_json::from_str::<Value>(text).is_ok_and(|v| sorted(&v))
}
