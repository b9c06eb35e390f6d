//! The cluster a model answers for: the pods and Services the intents
//! declare, built from the repository (never from emitted objects).
//!
//! Each version of an intent is one pod carrying the service's selector
//! and the version's labels (`intent::workloads`); an intent without
//! versions is one pod carrying its selector. Each intent's own Service
//! selects its pods by the selector. A model resolves emitted selectors
//! against these pods: an emitter whose selector reaches another service's
//! pod is caught by the answer, not by reading the selector.

use meshplan_policy_lang::intent::workloads;
use meshplan_policy_lang::parse::Repository;

use super::{selects, KubeService, Labels, Pod, ServicePort, Source};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    pub trust_domain: String,
    pub pods: Vec<Pod>,
    pub services: Vec<KubeService>,
}

impl Cluster {
    /// The pods and Services every intent of `repo` declares.
    pub fn of(repo: &Repository) -> Cluster {
        let mut cluster = Cluster {
            trust_domain: repo.trust_domain().to_owned(),
            ..Cluster::default()
        };
        for loaded in &repo.services {
            let s = &loaded.value;
            let namespace = repo.namespace_of(s).to_owned();
            let selector = workloads::selector(s);
            let service_account = workloads::service_account(s).to_owned();
            let ports: Vec<u32> = s
                .spec
                .ports
                .iter()
                .map(|p| p.target_port.unwrap_or(p.port))
                .collect();
            let to_map = |l: &meshplan_policy_lang::intent::labels::Labels| -> Labels {
                l.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
            };
            let pod = |id: String, labels: Labels| Pod {
                id,
                namespace: namespace.clone(),
                labels,
                service_account: service_account.clone(),
                ports: ports.clone(),
            };
            if s.spec.versions.is_empty() {
                let id = format!("{namespace}/{}", s.metadata.name);
                cluster.pods.push(pod(id, to_map(&selector)));
            }
            for v in &s.spec.versions {
                let id = format!("{namespace}/{}/{}", s.metadata.name, v.name);
                let labels = workloads::pod_labels(&selector, &v.labels);
                cluster.pods.push(pod(id, to_map(&labels)));
            }
            cluster.services.push(KubeService {
                namespace: namespace.clone(),
                name: workloads::host(s).to_owned(),
                selector: to_map(&selector),
                ports: s
                    .spec
                    .ports
                    .iter()
                    .map(|p| ServicePort {
                        name: p.name.clone(),
                        port: p.port,
                        target_port: p.target_port.unwrap_or(p.port),
                        protocol: p.protocol.as_str().to_owned(),
                    })
                    .collect(),
            });
        }
        cluster
    }

    /// The application's own Service `namespace/name`.
    pub fn service(&self, namespace: &str, name: &str) -> Option<&KubeService> {
        self.services
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }

    /// The pods of `namespace` that `selector` selects.
    pub fn select<'a>(
        &'a self,
        namespace: &str,
        selector: &Labels,
    ) -> impl Iterator<Item = &'a Pod> + use<'a> {
        let (namespace, selector) = (namespace.to_owned(), selector.clone());
        self.pods
            .iter()
            .filter(move |p| p.namespace == namespace && selects(&selector, &p.labels))
    }

    pub fn pod(&self, id: &str) -> Option<&Pod> {
        self.pods.iter().find(|p| p.id == id)
    }

    /// A request's source, as the pod `id` sends it.
    pub fn source(&self, id: &str) -> Option<Source> {
        self.pod(id).map(|p| Source::Workload {
            namespace: p.namespace.clone(),
            service_account: p.service_account.clone(),
            labels: p.labels.clone(),
        })
    }
}
