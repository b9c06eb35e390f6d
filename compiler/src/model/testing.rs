//! A kit for the models' tests: objects as emitters build them, pods and
//! Services of a cluster.

use serde_json::Value;

use crate::ir::Origin;
use crate::model::{KubeService, Labels, Pod, ServicePort};
use crate::object::MeshObject;

/// An object as an emitter builds it.
pub(crate) fn obj(
    api: &'static str,
    kind: &'static str,
    ns: &str,
    name: &str,
    spec: Value,
    annotations: &[(&str, &str)],
) -> MeshObject {
    let b = MeshObject::builder(
        "test",
        api,
        kind,
        ns,
        name,
        &Origin::new("ns/x", "f.yaml", 1),
    );
    annotations
        .iter()
        .fold(b.spec(spec), |b, (k, v)| b.annotation(k, v))
        .build()
}

pub(crate) fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()
}

pub(crate) fn pod(id: &str, labels_: &[(&str, &str)], sa: &str, ports: &[u32]) -> Pod {
    Pod {
        id: id.into(),
        namespace: id.split('/').next().unwrap_or_default().into(),
        labels: labels(labels_),
        service_account: sa.into(),
        ports: ports.to_vec(),
    }
}

/// A Service with ports `(name, port, targetPort)`.
pub(crate) fn kube_service(
    ns: &str,
    name: &str,
    selector: &[(&str, &str)],
    ports: &[(&str, u32, u32)],
) -> KubeService {
    KubeService {
        namespace: ns.into(),
        name: name.into(),
        selector: labels(selector),
        ports: ports
            .iter()
            .map(|(n, p, t)| ServicePort {
                name: (*n).into(),
                port: *p,
                target_port: *t,
                protocol: "http".into(),
            })
            .collect(),
    }
}
