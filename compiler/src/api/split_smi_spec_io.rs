//! `split.smi-spec.io`: SMI's `TrafficSplit` (v1alpha2) — the root
//! Service callers address, and the backend Services sharing its traffic
//! by weight. Fields in the order of their JSON names (see the module
//! above).

use serde::Serialize;

#[derive(Debug, Serialize)]
pub(crate) struct TrafficSplitSpec<'a> {
    pub backends: Vec<Backend>,
    /// The root Service.
    pub service: &'a str,
}

#[derive(Debug, Serialize)]
pub(crate) struct Backend {
    pub service: String,
    pub weight: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::sorted_keys;

    #[test]
    fn a_traffic_split_serialises_with_sorted_keys() {
        let t = serde_json::to_string(&TrafficSplitSpec {
            backends: vec![Backend {
                service: "web-v1".into(),
                weight: 100,
            }],
            service: "web",
        })
        .unwrap();
        assert!(sorted_keys(&t), "{t}");
    }
}
