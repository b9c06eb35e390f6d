//! What the fuzz targets share: a fuzz input read as a repository.
//!
//! An input is UTF-8 (invalid bytes replaced) split at NUL bytes: the first
//! part is `meshplan.yaml`, then file names and contents alternate
//! (`name\0text\0name\0text…`). The seeds under `corpus/` are written the
//! same way (`scripts/fuzz.sh seed`).

use meshplan_policy_lang::parse::Sources;

/// The repository an input stands for.
pub fn sources(data: &[u8]) -> Sources {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let mut files = vec![(
        "meshplan.yaml".to_owned(),
        parts.next().unwrap_or("").to_owned(),
    )];
    while let Some(name) = parts.next() {
        let name = match name.trim() {
            "" => format!("f{}.yaml", files.len()),
            n => n.to_owned(),
        };
        files.push((name, parts.next().unwrap_or("").to_owned()));
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    Sources { files }
}
