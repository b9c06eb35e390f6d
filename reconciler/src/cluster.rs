//! The connection to a cluster: credentials, one shared client, and the
//! discovery of each kind's API resource (cached per kind).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersionKind;
use kube::core::Resource as _;
use kube::discovery::{ApiResource, Scope};
use kube::{Client, Config};

use meshplan_compiler::object::Body;
use serde::Serialize;

use crate::inventory::ObjectRef;
use crate::Error;

/// Where the credentials come from.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    /// A kubeconfig file; otherwise `$KUBECONFIG`, `~/.kube/config`, or the
    /// pod's service account.
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig (default: its current context).
    pub context: Option<String>,
}

/// A kind as the API server serves it.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub resource: ApiResource,
    pub namespaced: bool,
}

impl Resolved {
    /// The namespace a request about an object in `namespace` names: none
    /// for a cluster-scoped kind, whatever the object says.
    pub fn namespace<'a>(&self, namespace: Option<&'a str>) -> Option<&'a str> {
        namespace.filter(|_| self.namespaced)
    }
}

/// Resolved kinds by `(apiVersion, kind)`.
type KindCache = HashMap<(String, String), Arc<Resolved>>;

/// One client, shared by every request, and the kinds resolved so far.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    kinds: Arc<Mutex<KindCache>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").finish_non_exhaustive()
    }
}

impl Cluster {
    pub async fn connect(opts: &ConnectOptions) -> Result<Cluster, Error> {
        let kc_opts = KubeConfigOptions {
            context: opts.context.clone(),
            ..KubeConfigOptions::default()
        };
        let config = match &opts.kubeconfig {
            Some(path) => {
                let kc = Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?;
                Config::from_custom_kubeconfig(kc, &kc_opts)
                    .await
                    .map_err(|source| Error::Kubeconfig {
                        path: path.display().to_string(),
                        source,
                    })?
            }
            None if opts.context.is_some() => {
                Config::from_kubeconfig(&kc_opts)
                    .await
                    .map_err(|source| Error::Kubeconfig {
                        path: "$KUBECONFIG".into(),
                        source,
                    })?
            }
            None => Config::infer().await.map_err(Error::InferConfig)?,
        };
        let client = Client::try_from(config).map_err(Error::Client)?;
        Ok(Cluster::from_client(client))
    }

    pub fn from_client(client: Client) -> Cluster {
        Cluster {
            client,
            kinds: Arc::default(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The API resource serving `apiVersion`/`kind`.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<Arc<Resolved>, Error> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(r) = self.cached(&key) {
            return Ok(r);
        }
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, caps) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|e| match &e {
                kube::Error::Api(s) if s.code == 404 => Error::UnknownKind {
                    api_version: api_version.into(),
                    kind: kind.into(),
                },
                kube::Error::Discovery(_) => Error::UnknownKind {
                    api_version: api_version.into(),
                    kind: kind.into(),
                },
                _ => Error::api(format!("discovering {api_version} {kind}"), &e),
            })?;
        let resolved = Arc::new(Resolved {
            resource,
            namespaced: caps.scope == Scope::Namespaced,
        });
        self.kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, resolved.clone());
        Ok(resolved)
    }

    fn cached(&self, key: &(String, String)) -> Option<Arc<Resolved>> {
        self.kinds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .cloned()
    }

    /// The API of one object's kind and namespace.
    pub fn api_for(&self, r: &Resolved, id: &ObjectRef) -> Api<DynamicObject> {
        self.api_in(r, id.namespace.as_deref())
    }

    /// The API of a kind in `namespace` (across every namespace without
    /// one, and always for a cluster-scoped kind).
    pub fn api_in(&self, r: &Resolved, namespace: Option<&str>) -> Api<DynamicObject> {
        match r.namespace(namespace) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &r.resource),
            None => Api::all_with(self.client.clone(), &r.resource),
        }
    }

    /// The API of a kind across every namespace.
    pub fn api_all(&self, r: &Resolved) -> Api<DynamicObject> {
        Api::all_with(self.client.clone(), &r.resource)
    }

    /// Server-side applies `body` to the object `id` and reads nothing
    /// back. The API server is asked for the object's metadata only
    /// (`as=PartialObjectMetadata`, served since Kubernetes 1.15) instead of
    /// the whole object: a PrometheusRule is several KB, and the inventory
    /// ConfigMap grows with the repository, which the server would encode
    /// and we would parse for an answer nobody reads. An error is still the
    /// server's `Status`.
    pub async fn apply_body(
        &self,
        r: &Resolved,
        id: &ObjectRef,
        params: &PatchParams,
        body: &Body,
    ) -> Result<(), kube::Error> {
        let url = DynamicObject::url_path(&r.resource, r.namespace(id.namespace.as_deref()));
        self.apply_at(url, &id.name, params, body).await
    }

    /// [`Cluster::apply_body`] for the object `name` under the collection
    /// `url` (`/api/v1/namespaces/NS/configmaps`, for instance).
    pub async fn apply_at(
        &self,
        url: String,
        name: &str,
        params: &PatchParams,
        body: &impl Serialize,
    ) -> Result<(), kube::Error> {
        let mut request = kube::core::Request::new(url)
            .patch(name, params, &Patch::Apply(body))
            .map_err(kube::Error::BuildRequest)?;
        request.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static(METADATA_ONLY),
        );
        self.client.request_text(request).await.map(drop)
    }
}

/// The media type of an answer holding an object's metadata only.
const METADATA_ONLY: &str = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
