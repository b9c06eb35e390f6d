//! SMI (`split.smi-spec.io/v1alpha2`): a **TrafficSplit** per service for
//! legacy Linkerd-SMI and Open Service Mesh installations, between the
//! per-version backend Services (`<host>-<version>`).
//!
//! Deprecated: the Service Mesh Interface was archived in 2023. It splits
//! traffic and nothing else; every other feature is reported (or left to a
//! target rendered alongside, for policy and SLOs).

use meshplan_policy_lang::intent::Target;

use super::features::{Feature, Support, L7_POLICY, METRICS, MTLS, POLICY};
use super::{backend_service_name, backend_services, EmitError, Emitter};
use crate::api::split_smi_spec_io::{Backend, TrafficSplitSpec};
use crate::ir::{Ir, RouteAction};
use crate::object::MeshObject;

const NAME: &str = "smi";
const API: &str = "split.smi-spec.io/v1alpha2";

#[derive(Debug)]
pub struct Smi;

impl Emitter for Smi {
    fn target(&self) -> Target {
        Target::Smi
    }

    fn support(&self, f: Feature) -> Support {
        match f {
            Feature::WeightedSplit | Feature::TcpSplit => Support::Yes,
            Feature::StrictMtls => Support::Elsewhere(MTLS, ""),
            Feature::AllowList => Support::Elsewhere(POLICY, ""),
            Feature::AllowListL7 => Support::Elsewhere(L7_POLICY, ""),
            Feature::SloRules => Support::Elsewhere(METRICS, ""),
            Feature::HeaderMatch
            | Feature::CookieMatch
            | Feature::PathMatch
            | Feature::MethodMatch
            | Feature::QueryMatch
            | Feature::RouteOrder
            | Feature::ServiceRoute
            | Feature::Redirect
            | Feature::Rewrite
            | Feature::Timeout
            | Feature::Retries
            | Feature::PerTryTimeout
            | Feature::CircuitBreaker
            | Feature::ConnectionPool
            | Feature::LoadBalancing
            | Feature::SessionAffinity
            | Feature::Failover
            | Feature::FaultInjection
            | Feature::Mirroring
            | Feature::StickyCanary
            | Feature::RateLimit => Support::No("SMI TrafficSplit only splits traffic"),
        }
    }

    fn namespace_local(&self) -> bool {
        true
    }

    fn emit(&self, ir: &Ir, out: &mut Vec<MeshObject>, _errors: &mut Vec<EmitError>) {
        for s in &ir.services {
            let Some(RouteAction::Forward(backends)) = s.routes.last().map(|r| &r.action) else {
                continue;
            };
            if s.versions.len() < 2 {
                // Nothing to split between.
                continue;
            }
            out.extend(backend_services(NAME, s, &[]));
            let spec = TrafficSplitSpec {
                backends: backends
                    .iter()
                    .map(|b| Backend {
                        service: backend_service_name(s, &b.version),
                        weight: b.weight,
                    })
                    .collect(),
                service: &s.host,
            };
            out.push(
                MeshObject::builder(NAME, API, "TrafficSplit", &s.namespace, &s.host, &s.origin)
                    .spec_typed(&spec)
                    .build(),
            );
        }
    }
}
