//! Resolving a reference to another service (`name` or `namespace/name`),
//! the one way check and the compiler both use.

use std::collections::HashMap;

use crate::intent::ServiceIntent;
use crate::parse::Repository;

/// Why a reference names no service.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unresolved {
    #[error("no ServiceIntent `{name}` in namespace `{namespace}`")]
    NotInNamespace { name: String, namespace: String },
    #[error("`{name}` is ambiguous: it exists in namespaces {}; write `namespace/{name}`", namespaces.join(", "))]
    Ambiguous {
        name: String,
        namespaces: Vec<String>,
    },
    #[error("no ServiceIntent named `{0}` exists in this repository")]
    Unknown(String),
}

/// Services by namespace and name.
#[derive(Debug)]
pub struct ServiceIndex<'a> {
    // Hash maps: every allow-list caller is looked up (by validation and
    // again by the compiler), and a search of ordered maps compares names
    // scattered over the heap, more of them the larger the repository.
    /// namespace → name → intent.
    by_ns: HashMap<&'a str, HashMap<&'a str, &'a ServiceIntent>>,
    /// name → the namespaces that have a service of that name.
    by_name: HashMap<&'a str, Vec<&'a str>>,
}

impl<'a> ServiceIndex<'a> {
    pub fn new(repo: &'a Repository) -> Self {
        let mut by_ns: HashMap<&str, HashMap<&str, &ServiceIntent>> = HashMap::new();
        let mut by_name: HashMap<&str, Vec<&str>> = HashMap::with_capacity(repo.services.len());
        for s in &repo.services {
            let ns = repo.namespace_of(&s.value);
            let name = s.value.metadata.name.as_str();
            by_ns.entry(ns).or_default().insert(name, &s.value);
            by_name.entry(name).or_default().push(ns);
        }
        Self { by_ns, by_name }
    }

    /// `name` (same namespace first, then unique anywhere) or `ns/name`
    /// → the service's intent and namespace.
    pub fn resolve(
        &self,
        from_ns: &str,
        reference: &str,
    ) -> Result<(&'a ServiceIntent, &'a str), Unresolved> {
        let found = |ns: &str, name: &str| self.lookup(ns, name);
        if let Some((ns, name)) = reference.split_once('/') {
            return found(ns, name).ok_or_else(|| Unresolved::NotInNamespace {
                name: name.to_owned(),
                namespace: ns.to_owned(),
            });
        }
        if let Some(hit) = found(from_ns, reference) {
            return Ok(hit);
        }
        match self.by_name.get(reference).map(Vec::as_slice) {
            Some([ns]) => {
                found(ns, reference).ok_or_else(|| Unresolved::Unknown(reference.to_owned()))
            }
            Some(many) => Err(Unresolved::Ambiguous {
                name: reference.to_owned(),
                namespaces: many.iter().map(|s| (*s).to_owned()).collect(),
            }),
            None => Err(Unresolved::Unknown(reference.to_owned())),
        }
    }

    fn lookup(&self, ns: &str, name: &str) -> Option<(&'a ServiceIntent, &'a str)> {
        let (&ns, names) = self.by_ns.get_key_value(ns)?;
        names.get(name).map(|&s| (s, ns))
    }

    /// Every service name, sorted, for "did you mean" hints.
    pub fn names(&self) -> Vec<&'a str> {
        let mut names: Vec<&str> = self.by_name.keys().copied().collect();
        names.sort_unstable();
        names
    }
}
