//! The core group (`v1`): the per-version backend `Service`s meshes that
//! split traffic between Services route to (Gateway API in GAMMA mode,
//! Linkerd). Fields in the order of their JSON names (see the module
//! above).

use std::collections::BTreeMap;

use serde::Serialize;

/// `Service` (v1): the pods it selects, and its ports.
#[derive(Debug, Serialize)]
pub(crate) struct ServiceSpec<'a> {
    pub ports: &'a [ServicePort<'a>],
    pub selector: BTreeMap<&'a str, &'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServicePort<'a> {
    /// How the mesh should speak to it (`http`, `kubernetes.io/h2c`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<&'static str>,
    pub name: &'a str,
    pub port: u32,
    /// `TCP`.
    pub protocol: &'static str,
    pub target_port: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sorted_keys;

    #[test]
    fn a_service_serialises_with_sorted_keys() {
        let ports = [ServicePort {
            app_protocol: Some("http"),
            name: "http",
            port: 80,
            protocol: "TCP",
            target_port: 8080,
        }];
        let t = serde_json::to_string(&ServiceSpec {
            ports: &ports,
            selector: BTreeMap::from([("version", "v1"), ("app", "web")]),
        })
        .unwrap();
        assert!(sorted_keys(&t), "{t}");
    }
}
