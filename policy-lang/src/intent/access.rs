//! The `access` block: a zero-trust allow list. Whatever it does not allow
//! is denied.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Access {
    /// Deny every caller the allow list does not name. Defaults to true.
    #[serde(default = "yes")]
    pub default_deny: bool,
    /// Who may call, and what.
    #[serde(default)]
    pub allow: Vec<AllowRule>,
}

fn yes() -> bool {
    true
}

/// Callers in `from` may make the requests described by `ports`, `methods`
/// and `paths` (each empty means any).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AllowRule {
    pub from: Vec<Caller>,
    /// Port names or numbers of this service.
    #[serde(default)]
    pub ports: Vec<PortRef>,
    /// HTTP methods (http ports only).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Paths: exact, or a prefix ending in `*` (http ports only).
    #[serde(default)]
    pub paths: Vec<String>,
}

/// One caller: exactly one of `service`, `namespace`, `serviceAccount`,
/// `anyone`.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Caller {
    /// Another service of this repository (`name` or `namespace/name`).
    #[serde(default)]
    pub service: Option<String>,
    /// Every workload of a namespace. `*` means any namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// A workload identity: `namespace/serviceaccount`.
    #[serde(default)]
    pub service_account: Option<String>,
    /// `true`: every caller the service's mTLS mode admits — under
    /// permissive (or unmanaged) mTLS also callers without a mesh identity:
    /// kubelet probes, clients outside the mesh. For public endpoints and
    /// probe paths.
    #[serde(default)]
    pub anyone: Option<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PortRef {
    Number(u32),
    Name(String),
}
