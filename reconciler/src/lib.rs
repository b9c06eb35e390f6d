//! meshplan's reconciler: makes a cluster match a compiled revision.
//!
//! The stages after the compiler's `emit`:
//!
//! | stage | module | input → output |
//! |---|---|---|
//! | read | [`live`] | desired objects + inventory name → [`live::Snapshot`] (owned live objects, seen through meshplan's field set) |
//! | diff | [`diff`] | desired objects + snapshot → [`diff::Plan`] (create / update / prune / unchanged, YAML diffs, semantic summary) |
//! | apply | [`apply`] | plan → [`apply::Outcome`] (server-side apply, ordered, bounded concurrency, retries, prune, inventory) |
//! | rollout | [`rollout`] | rollout spec + [`rollout::State`] + [`rollout::Event`] → new state, the position to render, effects |
//!
//! Kubernetes types stay in [`cluster`], [`live`] and [`apply`]; [`fields`],
//! [`inventory`] and [`diff`] are pure and tested without a cluster.

pub mod apply;
pub mod cluster;
pub mod controller;
pub mod diff;
pub mod fields;
pub mod inventory;
pub mod live;
mod order;
pub mod outgoing;
pub mod rollout;
pub mod source;

pub use cluster::{Cluster, ConnectOptions};
pub use inventory::{Inventory, InventoryName, ObjectRef};

/// meshplan's server-side-apply field manager.
pub const FIELD_MANAGER: &str = "meshplan";

/// The reconciler's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read the kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no cluster credentials: give --kubeconfig, set $KUBECONFIG, or run in a pod with a service account")]
    InferConfig(#[source] kube::config::InferConfigError),
    #[error("cannot create a Kubernetes client")]
    Client(#[source] kube::Error),
    #[error("the cluster does not serve {api_version} {kind}: is its CRD installed?")]
    UnknownKind { api_version: String, kind: String },
    /// An API call failed; `detail` is the server's answer in one line.
    #[error("{what}: {detail}")]
    Api {
        what: String,
        detail: String,
        /// The HTTP status, when the server answered.
        code: Option<u16>,
    },
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not Kubernetes YAML: {message}")]
    Yaml { path: String, message: String },
    /// The credentials file of outgoing requests is wrong.
    #[error("{path}: {message}")]
    Credentials { path: String, message: String },
    #[error("{what}")]
    System {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A short, bounded label for metrics and logs.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kubeconfig { .. } | Error::InferConfig(_) | Error::Client(_) => "config",
            Error::UnknownKind { .. } => "unknown_kind",
            Error::Api {
                code: Some(403), ..
            } => "forbidden",
            Error::Api { code: Some(_), .. } => "api",
            Error::Api { code: None, .. } => "unreachable",
            Error::Io { .. } | Error::Yaml { .. } | Error::System { .. } => "io",
            Error::Credentials { .. } => "config",
        }
    }

    pub(crate) fn api(what: impl Into<String>, e: &kube::Error) -> Error {
        let (detail, code) = describe(e);
        Error::Api {
            what: what.into(),
            detail,
            code,
        }
    }
}

/// `e` and every cause below it, joined by `: ` — what a log line or a
/// status message shows of an error whose levels each say their part.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The server's answer in one line, and its HTTP status.
pub(crate) fn describe(e: &kube::Error) -> (String, Option<u16>) {
    match e {
        kube::Error::Api(s) => {
            let reason = if s.reason.is_empty() {
                String::new()
            } else {
                format!("{} ", s.reason)
            };
            (format!("{reason}({}): {}", s.code, s.message), Some(s.code))
        }
        // The whole chain: "connection refused" sits at the bottom.
        other => (error_chain(other), None),
    }
}
