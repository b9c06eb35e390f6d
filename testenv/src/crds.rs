//! Installing the upstream CRDs (`$MESHPLAN_CRDS`) and other manifests into
//! the test apiserver.
//!
//! kube-apiserver 1.20 rejects three schema features newer than it:
//! `x-kubernetes-validations` (CEL rules, 1.25), `selectableFields` (1.30)
//! and `default: ""` on some string fields, so those are stripped. The
//! structural schemas — types, enums, required fields, patterns — stay and
//! are enforced.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::Client;
use serde_json::Value;

use crate::Error;

/// The field manager of everything the environment installs.
pub const MANAGER: &str = "meshplan-testenv";

/// Every YAML document of `path` (a file), as JSON.
pub fn read_documents(path: &Path) -> Result<Vec<Value>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Io(path.to_path_buf(), e))?;
    let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| Error::Yaml {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    Ok(docs.into_iter().filter(|d| d.is_object()).collect())
}

/// Removes what kube-apiserver 1.20 cannot accept from a CRD.
pub fn strip_for_1_20(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("x-kubernetes-validations");
            map.remove("selectableFields");
            if map.get("default") == Some(&Value::String(String::new())) {
                map.remove("default");
            }
            for child in map.values_mut() {
                strip_for_1_20(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(strip_for_1_20),
        _ => {}
    }
}

/// The CRD files of a directory, in install order: sorted, with
/// experimental channels first, so a CRD in both a standard and an
/// experimental file is installed from the experimental one (a superset:
/// objects of either channel validate).
pub fn crd_files(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::Io(dir.to_path_buf(), e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort_by_key(|p| {
        let name = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        (!name.contains("experimental"), name)
    });
    Ok(files)
}

/// Installs every CRD below `dir` and waits until all are established.
/// Returns the names installed.
pub async fn install_crds(client: &Client, dir: &Path) -> Result<Vec<String>, Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &crd_resource());
    let mut names: Vec<String> = Vec::new();
    for file in crd_files(dir)? {
        for mut doc in read_documents(&file)? {
            if doc.get("kind").and_then(Value::as_str) != Some("CustomResourceDefinition") {
                continue;
            }
            let Some(name) = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .map(str::to_owned)
            else {
                continue;
            };
            if names.contains(&name) {
                continue;
            }
            strip_for_1_20(&mut doc);
            api.patch(
                &name,
                &PatchParams::apply(MANAGER).force(),
                &Patch::Apply(&doc),
            )
            .await
            .map_err(|e| {
                Error::Kube(format!("installing CRD {name} from {}", file.display()), e)
            })?;
            names.push(name);
        }
    }
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in &names {
        crate::wait_for(
            &format!("CRD {name} to be established"),
            Duration::from_secs(60),
            || async {
                let crd = crds.get(name).await.ok()?;
                let established = crd
                    .status?
                    .conditions?
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                established.then_some(())
            },
        )
        .await;
    }
    Ok(names)
}

fn crd_resource() -> kube::core::ApiResource {
    kube::core::ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
        "customresourcedefinitions",
    )
}

/// Server-side applies every document of `path`, discovering each kind.
pub async fn apply_file(client: &Client, path: &Path) -> Result<usize, Error> {
    let mut n = 0;
    for doc in read_documents(path)? {
        apply_value(client, &doc).await?;
        n += 1;
    }
    Ok(n)
}

/// Server-side applies one object given as JSON.
pub async fn apply_value(client: &Client, doc: &Value) -> Result<DynamicObject, Error> {
    apply_value_with(client, doc, &PatchParams::apply(MANAGER).force()).await
}

/// Server-side applies one object with the given parameters (field
/// manager, dry-run), discovering its kind.
pub async fn apply_value_with(
    client: &Client,
    doc: &Value,
    params: &PatchParams,
) -> Result<DynamicObject, Error> {
    let s = |p: &str| {
        doc.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind, name, ns) = (
        s("/apiVersion"),
        s("/kind"),
        s("/metadata/name"),
        s("/metadata/namespace"),
    );
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| Error::Kube(format!("discovering {api_version} {kind}"), e))?;
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        Api::namespaced_with(
            client.clone(),
            if ns.is_empty() { "default" } else { &ns },
            &ar,
        )
    } else {
        Api::all_with(client.clone(), &ar)
    };
    api.patch(&name, params, &Patch::Apply(doc))
        .await
        .map_err(|e| Error::Kube(format!("applying {kind} {name}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_what_1_20_rejects() {
        let mut v = serde_json::json!({
            "spec": {"selectableFields": [{"jsonPath": ".spec.x"}], "versions": [{"schema": {"openAPIV3Schema": {
                "x-kubernetes-validations": [{"rule": "self.a > 0"}],
                "properties": {
                    "a": {"type": "string", "default": ""},
                    "b": {"type": "string", "default": "x"},
                    "c": {"type": "integer", "minimum": 1}
                }
            }}}]}
        });
        strip_for_1_20(&mut v);
        let s = v.to_string();
        assert!(!s.contains("x-kubernetes-validations"));
        assert!(!s.contains("selectableFields"));
        assert!(!s.contains(r#""default":"""#));
        assert!(s.contains(r#""default":"x""#));
        assert!(s.contains(r#""minimum":1"#));
    }

    #[test]
    fn installs_experimental_channels_first() {
        let dir = tempfile::tempdir().unwrap();
        for f in [
            "istio.yaml",
            "gateway-api-experimental.yaml",
            "gateway-api-standard.yaml",
            "README.md",
        ] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        let names: Vec<String> = crd_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "gateway-api-experimental.yaml",
                "gateway-api-standard.yaml",
                "istio.yaml"
            ]
        );
    }
}
