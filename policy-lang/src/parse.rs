//! The parse stage: a repository's files → a [`Repository`] of typed,
//! located documents, plus the diagnostics of everything that could not be
//! read.
//!
//! Every `.yaml`/`.yml` file below the root is read (multi-document), in
//! path order, except what `.meshplanignore` files exclude (gitignore
//! syntax) and hidden files. `meshplan.yaml` at the root is the
//! repository's configuration. A document that cannot be read is reported
//! and left out; the rest is still checked, so one run shows every problem.

use std::borrow::Cow;
use std::cell::RefCell;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::diagnostic::{Code, Diagnostic};
use crate::intent::{Config, Kind, Policy, ServiceIntent, API_GROUP, API_VERSION};
use crate::source::{Location, SourceFile, Span};
use crate::yaml::Tree as _;
use crate::yaml::{self, did_you_mean, DeErrorKind, Node, Path, Tape, TreeErrorKind};

/// The name of the configuration file at the repository root.
pub const CONFIG_FILE: &str = "meshplan.yaml";
/// Files larger than this are refused (no intent file is near it).
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// A typed document and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded<T> {
    pub value: T,
    pub file: Arc<SourceFile>,
    /// 0-based index of the document in its file.
    pub doc: usize,
    /// Where the whole document is.
    pub span: Span,
    /// The document's node tree, to locate any of its fields; dropped by
    /// [`Repository::forget_trees`] once checked, and then read again from
    /// `file` when a location is asked for.
    tree: Option<Node>,
}

impl<T> Loaded<T> {
    fn new(value: T, file: &Arc<SourceFile>, doc: usize, root: Node) -> Self {
        Loaded {
            value,
            file: Arc::clone(file),
            doc,
            span: root.span,
            tree: Some(root),
        }
    }

    /// The document's node tree.
    pub fn root(&self) -> Cow<'_, Node> {
        match &self.tree {
            Some(t) => Cow::Borrowed(t),
            None => Cow::Owned(self.reread()),
        }
    }

    /// The tree of a document already read once: it parses as it did.
    fn reread(&self) -> Node {
        self.file.trees().get(self.doc).cloned().unwrap_or(Node {
            span: self.span,
            value: yaml::Value::Null,
        })
    }

    /// `f` of the document's tree: its own, or its file's trees read again
    /// (and kept by the file), borrowed either way: a diagnostic in a
    /// document of 5,000 routes must not copy the document.
    fn with_root<R>(&self, f: impl FnOnce(&Node) -> R) -> R {
        if let Some(t) = &self.tree {
            return f(t);
        }
        let trees = self.file.trees();
        match trees.get(self.doc) {
            Some(t) => f(t),
            None => f(&Node {
                span: self.span,
                value: yaml::Value::Null,
            }),
        }
    }

    /// The location of the node at `path` (or its nearest ancestor).
    pub fn locate(&self, path: &Path) -> Location {
        let span = self.with_root(|root| root.locate(path).span);
        Location::new(Arc::clone(&self.file), span)
    }

    /// The location of the key of the node at `path`.
    pub fn locate_key(&self, path: &Path) -> Location {
        let span = self.with_root(|root| root.locate_key(path).span);
        Location::new(Arc::clone(&self.file), span)
    }

    /// The node at `path`, when it exists exactly.
    pub fn node(&self, path: &Path) -> Option<Cow<'_, Node>> {
        match &self.tree {
            Some(t) => t.find(path).map(Cow::Borrowed),
            None => self.with_root(|root| root.find(path).cloned().map(Cow::Owned)),
        }
    }
}

/// Everything read from a repository.
#[derive(Debug, Default)]
pub struct Repository {
    pub config: Option<Loaded<Config>>,
    pub services: Vec<Loaded<ServiceIntent>>,
    pub policies: Vec<Loaded<Policy>>,
    /// Every file read, in path order.
    pub files: Vec<Arc<SourceFile>>,
}

impl Repository {
    /// `f` of each item's document tree, in order, for a caller with many
    /// locations to find after `check` forgot the trees: a file's trees are
    /// read again once for its run of items (give them sorted by file), and
    /// only that file's are held — a large render's thousands of findings
    /// must neither read a file per finding nor hold every file's tree.
    pub fn in_trees<'a, T: 'a, X, R>(
        &self,
        items: impl IntoIterator<Item = (&'a Loaded<T>, X)>,
        mut f: impl FnMut(&'a Loaded<T>, &Node, X) -> R,
    ) -> Vec<R> {
        let mut held: Option<(&Arc<SourceFile>, Vec<Node>)> = None;
        let mut out = Vec::new();
        for (doc, x) in items {
            if let Some(t) = &doc.tree {
                out.push(f(doc, t, x));
                continue;
            }
            if !matches!(&held, Some((file, _)) if Arc::ptr_eq(file, &doc.file)) {
                let trees = yaml::parse(&doc.file.text).0;
                held = Some((&doc.file, trees.into_iter().map(|d| d.root).collect()));
            }
            let trees = held.as_ref().map_or(&[][..], |h| &h.1[..]);
            let fallback;
            let root = match trees.get(doc.doc) {
                Some(t) => t,
                None => {
                    fallback = Node {
                        span: doc.span,
                        value: yaml::Value::Null,
                    };
                    &fallback
                }
            };
            out.push(f(doc, root, x));
        }
        out
    }

    /// Drops every document's node tree. Check needs them all; after it
    /// they only serve the odd diagnostic (read again from the file then),
    /// and they are the largest part of a repository in memory.
    pub fn forget_trees(&mut self) {
        self.files.iter().for_each(|f| f.forget_trees());
        self.config.iter_mut().for_each(|c| c.tree = None);
        self.policies.iter_mut().for_each(|p| p.tree = None);
        // Only an intent read with its tree was allocated among its nodes
        // (see below); one read from the tape never had one.
        let repack: Vec<bool> = self
            .services
            .iter_mut()
            .map(|s| s.tree.take().is_some())
            .collect();
        // What is kept from here on is kept whole: no spare room (the
        // intents' vector is reserved a file each; a file may hold none,
        // or several).
        self.services.shrink_to_fit();
        self.policies.shrink_to_fit();
        self.files.shrink_to_fit();
        // Repacked: each intent was allocated among its tree's nodes, so
        // without the trees the pages holding its strings stay mostly
        // empty and the allocator can neither return nor reuse them for
        // the compiler's larger objects. A copy lands densely in fresh
        // pages: it lowers a large render's peak memory noticeably, for a
        // copy that costs little.
        for (s, _) in self.services.iter_mut().zip(repack).filter(|(_, r)| *r) {
            s.value = s.value.clone();
        }
    }

    /// The namespace intents without one go to.
    pub fn default_namespace(&self) -> &str {
        self.config
            .as_ref()
            .and_then(|c| c.value.default_namespace.as_deref())
            .unwrap_or("default")
    }

    pub fn trust_domain(&self) -> &str {
        self.config
            .as_ref()
            .and_then(|c| c.value.trust_domain.as_deref())
            .unwrap_or("cluster.local")
    }

    /// A service's namespace, defaulted.
    pub fn namespace_of<'a>(&'a self, s: &'a ServiceIntent) -> &'a str {
        s.metadata
            .namespace
            .as_deref()
            .unwrap_or_else(|| self.default_namespace())
    }
}

/// The input of the parse stage: files by their display name.
#[derive(Debug, Default)]
pub struct Sources {
    pub files: Vec<(String, String)>,
}

/// Reads the repository at `root`. An unreadable root is an `Err` (exit 2);
/// unreadable files inside it are diagnostics.
pub fn read_dir(root: &FsPath) -> Result<(Sources, Vec<Diagnostic>), crate::Error> {
    let meta = std::fs::metadata(root).map_err(|e| crate::Error::Io {
        path: root.to_path_buf(),
        source: e,
    })?;
    if !meta.is_dir() {
        return Err(crate::Error::NotADirectory(root.to_path_buf()));
    }
    let mut diags = Vec::new();
    let mut paths: Vec<PathBuf> = Vec::new();
    // An ignore file is read whole into patterns, a folder's before the
    // walk enters it: one over the limit keeps its folder out of the walk
    // (the check fails), before anything reads it.
    let oversized = std::sync::Arc::new(std::sync::Mutex::new(Vec::<PathBuf>::new()));
    if let Some(p) = oversized_ignore(root) {
        return Ok((
            Sources { files: Vec::new() },
            vec![ignore_too_large(root, &p)],
        ));
    }
    let seen = std::sync::Arc::clone(&oversized);
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .hidden(true)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(move |e| {
            // One `stat` per folder, none per file.
            let dir = e.file_type().is_some_and(|t| t.is_dir());
            match dir.then(|| oversized_ignore(e.path())).flatten() {
                Some(p) => {
                    seen.lock().unwrap_or_else(|p| p.into_inner()).push(p);
                    false
                }
                None => true,
            }
        })
        .build();
    for entry in walker {
        match entry {
            Ok(e) => {
                let p = e.path();
                let yaml = matches!(p.extension().and_then(|x| x.to_str()), Some("yaml" | "yml"));
                match e.file_type() {
                    Some(t) if yaml && t.is_file() => paths.push(p.to_path_buf()),
                    // Not followed: a link may point outside the repository.
                    Some(t) if yaml && t.is_symlink() => {
                        let name = display_name(root, p);
                        diags.push(
                            Diagnostic::error(
                                Code::Io,
                                format!("`{name}` is a symbolic link: meshplan does not follow links in a repository"),
                            )
                            .at(Location::new(SourceFile::new(name, ""), Span::default()))
                            .hint("commit the file itself, or list the link in .meshplanignore"),
                        );
                    }
                    _ => {}
                }
            }
            Err(e) => diags.push(Diagnostic::error(
                Code::Io,
                format!("cannot read part of the repository: {e}"),
            )),
        }
    }
    for p in oversized.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        diags.push(ignore_too_large(root, p));
    }
    let mut files = Vec::new();
    for p in paths {
        let name = display_name(root, &p);
        match read_file(&p) {
            Ok(text) => files.push((name, text)),
            Err(msg) => diags.push(
                Diagnostic::error(Code::Io, format!("cannot read `{name}`: {msg}"))
                    .at(Location::new(SourceFile::new(name, ""), Span::default())),
            ),
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok((Sources { files }, diags))
}

/// Files that list what the walk leaves out, in gitignore syntax.
const IGNORE_FILE: &str = ".meshplanignore";

/// Largest ignore file read: thousands of patterns (gitignore's matcher
/// takes hundreds of bytes of memory per byte of patterns).
pub const MAX_IGNORE_BYTES: u64 = 64 * 1024;

/// `dir`'s ignore file, when it is over [`MAX_IGNORE_BYTES`].
fn oversized_ignore(dir: &FsPath) -> Option<PathBuf> {
    let p = dir.join(IGNORE_FILE);
    let meta = std::fs::symlink_metadata(&p).ok()?;
    (meta.len() > MAX_IGNORE_BYTES).then_some(p)
}

fn ignore_too_large(root: &FsPath, p: &FsPath) -> Diagnostic {
    let name = display_name(root, p);
    Diagnostic::error(
        Code::Io,
        format!("`{name}` is over the limit of {MAX_IGNORE_BYTES} bytes: its folder is not read"),
    )
    .at(Location::new(SourceFile::new(name, ""), Span::default()))
    .hint("list folders or patterns with wildcards, not every file")
}

/// Why a file of the repository was not read.
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("file is {0} bytes, over the limit of {MAX_FILE_BYTES}")]
    TooLarge(u64),
    #[error("file is not UTF-8")]
    NotUtf8,
}

fn read_file(p: &FsPath) -> Result<String, ReadError> {
    use std::io::Read as _;
    // Opened once, its size asked of the open file: the path is looked up
    // once, not three times (a large repository is thousands of files, and
    // opening them is a visible part of a render).
    let file = std::fs::File::open(p)?;
    let len = file.metadata()?.len();
    if len > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(len));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0).saturating_add(1));
    // A file that grew since is read no further than just past the limit.
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes)?;
    let read = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if read > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge(read));
    }
    String::from_utf8(bytes).map_err(|_| ReadError::NotUtf8)
}

/// `a/b.yaml` relative to the root, `/`-separated on every platform.
fn display_name(root: &FsPath, p: &FsPath) -> String {
    let rel = p.strip_prefix(root).unwrap_or(p);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Parses and types every document. Pure: no file system.
pub fn parse(sources: &Sources) -> (Repository, Vec<Diagnostic>) {
    parse_files(sources.files.iter().cloned())
}

/// [`parse`], keeping the sources' text rather than copying it.
pub fn parse_owned(sources: Sources) -> (Repository, Vec<Diagnostic>) {
    parse_files(sources.files.into_iter())
}

fn parse_files(
    files: impl ExactSizeIterator<Item = (String, String)>,
) -> (Repository, Vec<Diagnostic>) {
    let mut repo = Repository::default();
    let mut diags = Vec::new();
    // A file holds a service, mostly: the intents' vector is not grown
    // by doubling (and copied whole each time).
    repo.services.reserve(files.len());
    repo.files.reserve(files.len());
    // The fast reader's output, reused from file to file.
    let mut tape = Tape::default();
    for (name, text) in files {
        let file = SourceFile::new(name, text);
        let (name, text) = (&file.name, &file.text);
        repo.files.push(Arc::clone(&file));
        let is_config = name == CONFIG_FILE;
        let (docs, errors) = match yaml::read(text, &mut tape) {
            Some(()) if !is_config && service_from_tape(&mut repo, &file, &tape) => continue,
            Some(()) => (tape.trees(text), Vec::new()),
            None => yaml::parse(text),
        };
        for e in errors {
            let code = match e.kind {
                TreeErrorKind::DuplicateKey => Code::DuplicateKey,
                _ => Code::YamlSyntax,
            };
            diags.push(
                Diagnostic::error(code, e.message.clone())
                    .at(Location::new(Arc::clone(&file), e.span)),
            );
        }
        for doc in docs {
            load_document(&mut repo, &mut diags, &file, doc, is_config);
        }
        if is_config && repo.config.is_none() && !diags.iter().any(|d| same_file(d, &file)) {
            diags.push(
                Diagnostic::error(
                    Code::MissingField,
                    "meshplan.yaml has no configuration document",
                )
                .at(Location::new(Arc::clone(&file), Span::default()))
                .hint(
                    "start it with `apiVersion: meshplan.dev/v1alpha1` and `kind: MeshplanConfig`",
                ),
            );
        }
    }
    (repo, diags)
}

/// Reads a file holding one service intent, and nothing to report about
/// it, straight from the fast reader's tape: no tree is built (one is
/// read again from the file if a later diagnostic needs a location). Most
/// repositories keep a service a file, and building the tree was a large
/// part of a check. `false` when the file is anything else, or anything is
/// wrong with the intent: it then goes the usual way, which reports it.
fn service_from_tape(repo: &mut Repository, file: &Arc<SourceFile>, tape: &Tape) -> bool {
    let root = match tape.root(&file.text, 0) {
        Some(root) if tape.documents() == 1 => root,
        _ => return false,
    };
    let field = |key: &str| root.get(key).and_then(|n| n.as_str());
    if field("apiVersion") != Some(API_VERSION)
        || field("kind") != Some(Kind::ServiceIntent.as_str())
    {
        return false;
    }
    let sink = RefCell::new(Vec::new());
    match yaml::from_node::<_, ServiceIntent>(root, &sink) {
        Ok(value) if sink.borrow().is_empty() => {
            repo.services.push(Loaded {
                value,
                file: Arc::clone(file),
                doc: 0,
                span: root.span(),
                tree: None,
            });
            true
        }
        _ => false,
    }
}

fn same_file(d: &Diagnostic, f: &Arc<SourceFile>) -> bool {
    d.location.as_ref().is_some_and(|l| l.file.name == f.name)
}

fn load_document(
    repo: &mut Repository,
    diags: &mut Vec<Diagnostic>,
    file: &Arc<SourceFile>,
    doc: yaml::Document,
    is_config: bool,
) {
    let (root, index) = (doc.root, doc.index);
    let at = |n: &Node| Location::new(Arc::clone(file), n.span);
    if root.value == yaml::Value::Null {
        return; // An empty document, e.g. a trailing `---`.
    }
    if !matches!(root.value, yaml::Value::Map(_)) {
        diags.push(
            Diagnostic::error(
                Code::WrongType,
                "a document must be a mapping with apiVersion and kind",
            )
            .at(at(&root)),
        );
        return;
    }
    let Some(api) = root.get("apiVersion") else {
        diags.push(
            Diagnostic::error(Code::MissingField, "missing required field `apiVersion`")
                .at(Location::new(
                    Arc::clone(file),
                    Span::on_line(root.span.start, 1),
                ))
                .hint(format!("add `apiVersion: {API_VERSION}`")),
        );
        return;
    };
    let api_str = api.as_str().unwrap_or("");
    if api_str != API_VERSION {
        let d = if api_str.starts_with(&format!("{API_GROUP}/")) {
            Diagnostic::error(
                Code::UnsupportedApiVersion,
                format!(
                    "apiVersion `{api_str}` is not supported: this meshplan reads `{API_VERSION}`"
                ),
            )
        } else {
            Diagnostic::error(
                Code::UnknownKind,
                format!("not a meshplan document: apiVersion `{api_str}`"),
            )
            .hint(format!(
                "meshplan reads `{API_VERSION}` documents; list other files in .meshplanignore"
            ))
        };
        diags.push(d.at(at(api)));
        return;
    }
    let Some(kind_node) = root.get("kind") else {
        diags.push(
            Diagnostic::error(Code::MissingField, "missing required field `kind`").at(
                Location::new(Arc::clone(file), Span::on_line(root.span.start, 1)),
            ),
        );
        return;
    };
    let kind_str = kind_node.as_str().unwrap_or("");
    let Some(kind) = Kind::parse(kind_str) else {
        let names: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        diags.push(
            Diagnostic::error(
                Code::UnknownKind,
                format!(
                    "unknown kind `{kind_str}`: expected one of {}",
                    names
                        .iter()
                        .map(|n| format!("`{n}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .at(at(kind_node))
            .maybe_hint(did_you_mean(kind_str, &names)),
        );
        return;
    };
    match (kind, is_config) {
        (Kind::MeshplanConfig, true) => {
            if repo.config.is_some() {
                diags.push(
                    Diagnostic::error(
                        Code::DuplicateName,
                        "meshplan.yaml holds more than one MeshplanConfig",
                    )
                    .at(at(kind_node)),
                );
            } else if let Some(value) = typed::<Config>(file, &root, diags) {
                repo.config = Some(Loaded::new(value, file, index, root));
            }
        }
        (Kind::MeshplanConfig, false) => diags.push(
            Diagnostic::error(
                Code::UnknownKind,
                "a MeshplanConfig is only read from meshplan.yaml at the repository root",
            )
            .at(at(kind_node))
            .hint("move it to meshplan.yaml at the root"),
        ),
        (_, true) => diags.push(
            Diagnostic::error(
                Code::UnknownKind,
                format!("meshplan.yaml holds the configuration, not a {kind_str}"),
            )
            .at(at(kind_node))
            .hint("put intents and policies in other files"),
        ),
        (Kind::ServiceIntent, false) => {
            if let Some(value) = typed::<ServiceIntent>(file, &root, diags) {
                repo.services.push(Loaded::new(value, file, index, root));
            }
        }
        (Kind::Policy, false) => {
            if let Some(value) = typed::<Policy>(file, &root, diags) {
                repo.policies.push(Loaded::new(value, file, index, root));
            }
        }
    }
}

/// Deserializes a document, reporting every unknown field and the first
/// other error.
fn typed<T: DeserializeOwned>(
    file: &Arc<SourceFile>,
    root: &Node,
    diags: &mut Vec<Diagnostic>,
) -> Option<T> {
    let sink = RefCell::new(Vec::new());
    let result: Result<T, _> = yaml::from_node(root, &sink);
    let mut errors = sink.into_inner();
    let value = match result {
        Ok(v) => Some(v),
        Err(e) => {
            errors.push(e);
            None
        }
    };
    for e in errors {
        let code = match e.kind {
            DeErrorKind::UnknownField => Code::UnknownField,
            DeErrorKind::WrongType => Code::WrongType,
            DeErrorKind::MissingField => Code::MissingField,
            DeErrorKind::InvalidValue => Code::InvalidValue,
            DeErrorKind::UnknownVariant => Code::UnknownValue,
        };
        let span = e.span.unwrap_or(root.span);
        // A missing field is reported at the first line of its mapping.
        let span = if e.kind == DeErrorKind::MissingField {
            Span::on_line(span.start, 1)
        } else {
            span
        };
        diags.push(
            Diagnostic::error(code, e.message)
                .at(Location::new(Arc::clone(file), span))
                .maybe_hint(e.hint),
        );
    }
    // Unknown fields make the document unusable too: what the user meant is
    // unknown, and checking a guess would mislead.
    if diags
        .iter()
        .any(|d| d.code == Code::UnknownField.as_str() && same_file(d, file) && within(d, root))
    {
        return None;
    }
    value
}

fn within(d: &Diagnostic, root: &Node) -> bool {
    d.location
        .as_ref()
        .is_some_and(|l| l.span.start >= root.span.start && l.span.start <= root.span.end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgotten_trees_locate_as_before() {
        let text = "apiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: a\nspec:\n  ports:\n  - name: web\n    port: 80\n    protocol: http\n---\napiVersion: meshplan.dev/v1alpha1\nkind: ServiceIntent\nmetadata:\n  name: b\n  namespace: x\nspec:\n  ports:\n  - name: http\n    port: 8080\n    protocol: http\n";
        let (mut repo, diags) = parse(&Sources {
            files: vec![("a.yaml".into(), text.into())],
        });
        assert!(diags.is_empty(), "{diags:?}");
        let paths = [
            "metadata.name",
            "spec.ports[0].protocol",
            "spec.ports[0]",
            "nope",
        ];
        let seen = |repo: &Repository| {
            let mut out = Vec::new();
            for s in &repo.services {
                for p in paths {
                    let p = Path::parse(p);
                    let node = s.node(&p).map(|n| n.span);
                    out.push((s.locate(&p), s.locate_key(&p), node, s.root().span));
                }
            }
            out
        };
        let before = seen(&repo);
        let roots: Vec<Node> = repo
            .services
            .iter()
            .map(|s| s.root().into_owned())
            .collect();
        repo.forget_trees();
        assert!(repo.services.iter().all(|s| s.tree.is_none()));
        assert_eq!(seen(&repo), before);
        // One reading of the file serves every document in it.
        let items = repo.services.iter().zip(&roots);
        let found = repo.in_trees(items, |_, tree, root| tree == root);
        assert_eq!(found, [true; 2]);
        assert_eq!(repo.services[1].doc, 1);
        assert_eq!(repo.services[1].span.start.line, 11);
    }

    /// Each one-service file of the project and of a generated repository,
    /// and each with one line left out: read from the tape or not, the
    /// service is what the tree gives.
    #[test]
    fn reads_a_one_service_file_from_the_tape_as_from_its_tree() {
        let mut files: Vec<(String, String)> = crate::yaml::project_yaml_files()
            .iter()
            .map(|p| {
                (
                    p.display().to_string(),
                    std::fs::read_to_string(p).expect("utf-8"),
                )
            })
            .collect();
        files.extend(crate::generate::repository(30).files);
        let mut variants = Vec::new();
        for (name, text) in &files {
            variants.push((name.clone(), text.clone()));
            let lines: Vec<&str> = text.lines().collect();
            for skip in 0..lines.len() {
                let mut t: Vec<&str> = lines.clone();
                t.remove(skip);
                variants.push((format!("{name} without line {}", skip + 1), t.join("\n")));
            }
        }
        let (mut from_tape, mut with_tree) = (0, 0);
        for (name, text) in variants {
            let (repo, _) = parse(&Sources {
                files: vec![("s.yaml".into(), text.clone())],
            });
            let (docs, _) = yaml::parse(&text);
            // Typed from the tape or the tree: the same value, or the same
            // errors at the same places.
            let mut tape = Tape::default();
            if yaml::read(&text, &mut tape).is_some() {
                for (d, doc) in docs.iter().enumerate() {
                    let typed = |from_tape: bool| {
                        let sink = RefCell::new(Vec::new());
                        let r: Result<ServiceIntent, _> = match tape.root(&text, d) {
                            Some(root) if from_tape => yaml::from_node(root, &sink),
                            _ => yaml::from_node(&doc.root, &sink),
                        };
                        (r, sink.into_inner())
                    };
                    assert_eq!(typed(true), typed(false), "{name}");
                }
            }
            for s in &repo.services {
                let root = &docs[s.doc].root;
                let sink = RefCell::new(Vec::new());
                let expected: ServiceIntent = yaml::from_node(root, &sink).expect("typed");
                assert_eq!(s.value, expected, "{name}");
                assert_eq!(s.span, root.span, "{name}");
                assert_eq!(&*s.root(), root, "{name}");
                if s.tree.is_some() {
                    with_tree += 1;
                } else {
                    from_tape += 1;
                }
            }
        }
        // Both ways are taken (a line left out of a one-service file often
        // makes a diagnostic, and then the tree is kept).
        assert!(
            from_tape > 500 && with_tree > 500,
            "{from_tape} / {with_tree}"
        );
    }

    #[test]
    fn refuses_a_file_over_the_size_limit_or_not_utf8_and_reads_the_rest() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.path().join(name), bytes).expect("written");
        };
        let limit = usize::try_from(MAX_FILE_BYTES).expect("fits");
        write("big.yaml", &vec![b'#'; limit + 1]);
        write("at-limit.yaml", &vec![b'#'; limit]);
        write("latin1.yaml", b"name: caf\xe9\n");
        write("ok.yaml", b"a: 1\n");
        let (sources, diags) = read_dir(dir.path()).expect("a directory");
        let names: Vec<&str> = sources.files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["at-limit.yaml", "ok.yaml"]);
        assert_eq!(sources.files[0].1.len(), limit);
        let mut messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
        messages.sort_unstable();
        assert_eq!(
            messages,
            [
                format!(
                    "cannot read `big.yaml`: file is {} bytes, over the limit of {MAX_FILE_BYTES}",
                    limit + 1
                ),
                "cannot read `latin1.yaml`: file is not UTF-8".to_string(),
            ]
        );
    }
}
