//! How an inventory is kept: a head ConfigMap and its parts (layout 2).
//!
//! One ConfigMap cannot hold a large repository's inventory: the API
//! server refuses an object over 1 MiB, which one inventory of every
//! object and service summary passed at about 1,500 services. So:
//!
//! - the **head**, `<name>`, keeps the revision, the names of the parts,
//!   the cluster-scoped objects and whether a summary is recorded;
//! - each **part**, `<name>.<namespace>.<n>-<k>`, keeps the objects of one
//!   namespace (`apiVersion kind name` lines) and the summaries of its
//!   services. A namespace whose entries would pass [`PART_BYTES`] is
//!   split into `n` = 2, 4, 8… parts, each entry in the part its name
//!   hashes to, so no object comes near the limit whatever a namespace
//!   holds, and a change rewrites the parts its entries are in, not the
//!   whole inventory. `n` is in the name: a namespace split anew gets parts
//!   of new names, and the old ones stay whole until the new head replaces
//!   them (within one split, a part rewritten in place before its head only
//!   ever lists more than the head's revision needs, never less).
//!
//! All carry the label `meshplan.dev/inventory: <name>` (one list reads
//! them) and their content's hash (`meshplan.dev/content-hash`): a writer
//! writes only the parts whose hash changed, the head last (a reader that
//! sees the new head sees its parts), then deletes the parts the head no
//! longer names. A part the head names but that is missing is read as
//! empty: its objects are not pruned (the safe side) and show as
//! meshplan's but not inventoried.
//!
//! A head without `layout` is layout 1, one ConfigMap holding everything
//! ([`Inventory::from_data`]); it is read as before and rewritten as
//! layout 2 at the next write, which touches no managed object.

use std::collections::BTreeMap;

use meshplan_compiler::Summary;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{parse_line, Inventory, InventoryName, ObjectRef};

/// The label that marks an inventory's ConfigMaps (its value: the
/// inventory's name, or a hash of it when that is no label value).
pub const INVENTORY_LABEL: &str = "meshplan.dev/inventory";
const CONTENT_HASH: &str = "meshplan.dev/content-hash";
const LAYOUT: &str = "2";
/// A part's size above which its namespace is split: a quarter of the API
/// server's limit, so a part stays far from it even as it grows until the
/// next write.
pub const PART_BYTES: usize = 256 * 1024;
/// More parts than this per namespace would each be tiny: the repository
/// has more than a million objects in one namespace.
const MAX_SPLIT: usize = 4096;

/// One ConfigMap of an inventory, to be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Piece {
    pub name: String,
    /// Of its content: equal to the live one's, it needs no write.
    pub hash: String,
    pub body: Value,
}

/// The ConfigMaps an inventory is kept in.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    pub head: Piece,
    pub parts: Vec<Piece>,
}

/// The value of [`INVENTORY_LABEL`] for the inventory `at`.
pub fn label_value(at: &InventoryName) -> String {
    let name = &at.name;
    let ok = name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    match ok {
        true => name.clone(),
        false => format!("h-{}", hex(&Sha256::digest(name.as_bytes()))),
    }
}

/// The label selector of the inventory `at`'s ConfigMaps.
pub fn selector(at: &InventoryName) -> String {
    format!("{INVENTORY_LABEL}={}", label_value(at))
}

fn hex(digest: &[u8]) -> String {
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Which part an entry goes to: FNV-1a, then mixed (splitmix64's
/// finaliser: FNV's low bits depend on the bytes' low bits alone), the
/// same in every build (std's hasher may change between Rust releases,
/// and a changed assignment would rewrite every part).
fn spread(s: &str) -> u64 {
    let h = s.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// `namespace`'s entries: its objects, and its services' summaries.
#[derive(Default)]
struct Namespace<'a> {
    objects: Vec<&'a ObjectRef>,
    summary: BTreeMap<&'a String, &'a meshplan_compiler::summary::ServiceSummary>,
}

impl Inventory {
    /// The ConfigMaps this inventory is kept in, at `at` (deterministic).
    pub fn to_configmaps(&self, at: &InventoryName) -> Stored {
        let mut cluster_scoped = String::new();
        let mut namespaces: BTreeMap<&str, Namespace> = BTreeMap::new();
        for o in &self.objects {
            match &o.namespace {
                Some(ns) => namespaces.entry(ns).or_default().objects.push(o),
                None => cluster_scoped.push_str(&line(o, true)),
            }
        }
        for (key, s) in self.summary.iter().flat_map(|s| &s.services) {
            let ns = key.split_once('/').map_or("", |(ns, _)| ns);
            namespaces.entry(ns).or_default().summary.insert(key, s);
        }
        let mut parts = Vec::new();
        for (ns, entries) in &namespaces {
            parts.extend(self.namespace_parts(at, ns, entries));
        }
        let names: Vec<&str> = parts.iter().map(|p: &Piece| p.name.as_str()).collect();
        let data = json!({
            "layout": LAYOUT,
            "revision": self.revision.clone().unwrap_or_default(),
            "parts": names.join("\n"),
            "objects": cluster_scoped,
            "summary": if self.summary.is_some() { "true" } else { "false" },
        });
        Stored {
            head: piece(at, at.name.clone(), data),
            parts,
        }
    }

    /// One namespace's parts: as many as keep each under [`PART_BYTES`].
    fn namespace_parts(&self, at: &InventoryName, ns: &str, entries: &Namespace) -> Vec<Piece> {
        let summary_text = |s: &BTreeMap<&String, &_>| match self.summary {
            Some(_) => serde_json::to_string(&json!({ "services": s })).unwrap_or_default(),
            None => String::new(),
        };
        let size = entries
            .objects
            .iter()
            .map(|o| line(o, false).len())
            .sum::<usize>()
            + summary_text(&entries.summary).len();
        let mut split = 1;
        while size / split > PART_BYTES && split < MAX_SPLIT {
            split *= 2;
        }
        let bucket = |s: &str| (spread(s) % split as u64) as usize;
        let mut objects = vec![String::new(); split];
        for o in &entries.objects {
            objects[bucket(&format!("{} {}", o.kind, o.name))].push_str(&line(o, false));
        }
        let mut summaries = vec![BTreeMap::new(); split];
        for (k, s) in &entries.summary {
            summaries[bucket(k)].insert(*k, *s);
        }
        objects
            .into_iter()
            .zip(summaries)
            .enumerate()
            .filter(|(_, (o, s))| !o.is_empty() || !s.is_empty())
            .map(|(k, (objects, summary))| {
                let data = json!({
                    "namespace": ns,
                    "objects": objects,
                    "summary.json": summary_text(&summary),
                });
                piece(at, part_name(at, ns, split, k), data)
            })
            .collect()
    }

    /// The inventory kept in `maps` (each ConfigMap's name and `data`):
    /// `None` without its head. A head of layout 1 is read as one
    /// ConfigMap ([`Inventory::from_data`]).
    pub fn from_configmaps(
        at: &InventoryName,
        maps: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Option<Inventory> {
        let head = maps.get(&at.name)?;
        if head.get("layout").map(String::as_str) != Some(LAYOUT) {
            return Some(Inventory::from_data(head));
        }
        let mut summary =
            (head.get("summary").map(String::as_str) == Some("true")).then(Summary::default);
        let mut objects: std::collections::BTreeSet<ObjectRef> = head
            .get("objects")
            .map(|t| t.lines().filter_map(parse_line).collect())
            .unwrap_or_default();
        let names = head.get("parts").map(String::as_str).unwrap_or_default();
        for part in names.lines().filter_map(|n| maps.get(n)) {
            let ns = part.get("namespace").cloned().unwrap_or_default();
            let text = part.get("objects").map(String::as_str).unwrap_or_default();
            objects.extend(text.lines().filter_map(|l| {
                let mut f = l.split_whitespace();
                let (api_version, kind, name) = (f.next()?, f.next()?, f.next()?);
                Some(ObjectRef {
                    api_version: api_version.into(),
                    kind: kind.into(),
                    namespace: Some(ns.clone()),
                    name: name.into(),
                })
            }));
            let part_summary = part
                .get("summary.json")
                .and_then(|t| serde_json::from_str::<Summary>(t).ok());
            if let (Some(s), Some(p)) = (summary.as_mut(), part_summary) {
                s.services.extend(p.services);
            }
        }
        Some(Inventory {
            objects,
            revision: head.get("revision").filter(|r| !r.is_empty()).cloned(),
            summary,
        })
    }
}

/// `apiVersion kind [namespace] name`, one line (`-` for no namespace).
fn line(o: &ObjectRef, with_namespace: bool) -> String {
    match with_namespace {
        true => format!(
            "{} {} {} {}\n",
            o.api_version,
            o.kind,
            o.namespace.as_deref().unwrap_or("-"),
            o.name
        ),
        false => format!("{} {} {}\n", o.api_version, o.kind, o.name),
    }
}

/// `<name>.<namespace>.<n>-<k>`, part `k` of `n`: a namespace is a DNS
/// label, so no two namespaces' parts share a name. Too long for a
/// ConfigMap name (253), the name's start and a hash of the whole.
fn part_name(at: &InventoryName, ns: &str, n: usize, k: usize) -> String {
    let name = format!("{}.{ns}.{n}-{k}", at.name);
    if name.len() <= 253 {
        return name;
    }
    let start: String = at.name.chars().take(200).collect();
    let start = start.trim_end_matches(['-', '.']);
    let whole = format!("{}/{ns}", at.name);
    format!("{start}.{}.{n}-{k}", hex(&Sha256::digest(whole.as_bytes())))
}

/// A ConfigMap of the inventory `at`, with its content's hash.
fn piece(at: &InventoryName, name: String, data: Value) -> Piece {
    let hash = hex(&Sha256::digest(data.to_string().as_bytes()));
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": at.namespace,
            "labels": {
                "app.kubernetes.io/name": "meshplan",
                "app.kubernetes.io/component": "inventory",
                INVENTORY_LABEL: label_value(at),
            },
            "annotations": { CONTENT_HASH: hash },
        },
        "data": data,
    });
    Piece { name, hash, body }
}

/// The content hash a live inventory ConfigMap records.
pub fn recorded_hash(annotations: Option<&BTreeMap<String, String>>) -> Option<&str> {
    annotations?.get(CONTENT_HASH).map(String::as_str)
}

#[cfg(test)]
mod tests;
