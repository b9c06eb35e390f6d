//! A Git repository as a source of revisions (git2, no `git` binary).
//!
//! [`GitSource::sync`] fetches the pinned reference into a local checkout
//! and resets the work tree to it: a branch follows its remote tip, even
//! when history was rewritten (force-pushed); a tag or a commit stays put.
//! URLs: `file://` (and plain paths), `git://`, `http(s)://` (basic auth or
//! a token), `ssh://` and `user@host:path` (a key, host keys verified
//! against a known_hosts file — an unknown or changed host key refuses the
//! connection; there is no "accept new").
//!
//! Credentials never appear in logs or errors: [`Secret`] prints as
//! `<redacted>`, and URLs are shown without their user info.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use git2::{
    build::CheckoutBuilder, AutotagOption, CertificateCheckStatus, Cred, CredentialType,
    FetchOptions, Oid, RemoteCallbacks, Repository,
};

pub use super::error::GitError;
use super::error::{FetchFailure, KeyProblem, Libgit2, Unresolved, Unverified};

/// A credential. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into().trim_end_matches(['\n', '\r']).to_owned())
    }

    /// Reads a mounted secret file (a trailing newline is dropped).
    pub fn from_file(path: &Path) -> Result<Secret, GitError> {
        std::fs::read_to_string(path)
            .map(Secret::new)
            .map_err(|source| GitError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            })
    }

    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How to authenticate.
#[derive(Clone, Debug, Default)]
pub enum GitAuth {
    #[default]
    None,
    /// HTTP basic auth.
    Basic { username: String, password: Secret },
    /// An access token (GitHub, GitLab, Gitea…), sent as the basic-auth
    /// password of the user `x-access-token`.
    Token(Secret),
    /// An SSH key; the server's host key must be in `known_hosts`.
    SshKey {
        private_key: PathBuf,
        known_hosts: PathBuf,
    },
}

/// Which revision to follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitRef {
    /// The remote's default branch (its `HEAD`).
    DefaultBranch,
    Branch(String),
    Tag(String),
    /// A full or abbreviated commit id.
    Commit(String),
}

/// A Git repository to follow.
#[derive(Clone, Debug)]
pub struct GitSource {
    pub url: String,
    pub reference: GitRef,
    /// A folder inside the repository (monorepos); the root when `None`.
    pub path: Option<PathBuf>,
    pub auth: GitAuth,
    /// Fetch only the tip (depth 1). Ignored for a commit pin, which may
    /// be anywhere in history.
    pub shallow: bool,
    /// Where the checkout lives between syncs.
    pub checkout: PathBuf,
    /// When set, a commit is used only if it carries an SSH signature by
    /// one of these keys.
    pub signers: Option<AllowedSigners>,
}

/// The keys whose commit signatures are trusted: SSH keys, read from a
/// file in OpenSSH's `allowed_signers` format (`principals [options]
/// keytype key`) or `authorized_keys` format (`keytype key [comment]`), and
/// OpenPGP public keys (ASCII-armored, as `gpg --export --armor` writes
/// them).
#[derive(Clone, Debug, Default)]
pub struct AllowedSigners {
    keys: Vec<(String, ssh_key::PublicKey)>,
    pgp: Vec<pgp::composed::SignedPublicKey>,
}

impl AllowedSigners {
    pub fn from_file(path: &Path) -> Result<AllowedSigners, GitError> {
        let text = std::fs::read_to_string(path).map_err(|source| GitError::Io {
            action: "read the allowed signers",
            path: path.to_owned(),
            source,
        })?;
        let signers = AllowedSigners::parse(&text);
        if signers.keys.is_empty() {
            return Err(GitError::Keys {
                path: path.to_owned(),
                problem: KeyProblem::NoSshKey,
            });
        }
        Ok(signers)
    }

    /// Adds the OpenPGP public keys of an armored file.
    pub fn add_pgp_file(&mut self, path: &Path) -> Result<(), GitError> {
        use pgp::composed::Deserializable as _;
        let text = std::fs::read_to_string(path).map_err(|source| GitError::Io {
            action: "read the OpenPGP keys",
            path: path.to_owned(),
            source,
        })?;
        let keys_error = |problem| GitError::Keys {
            path: path.to_owned(),
            problem,
        };
        let (keys, _) = pgp::composed::SignedPublicKey::from_string_many(&text)
            .map_err(|e| keys_error(KeyProblem::NotArmored(e)))?;
        let before = self.pgp.len();
        for k in keys {
            self.pgp
                .push(k.map_err(|e| keys_error(KeyProblem::UnreadablePgpKey(e)))?);
        }
        if self.pgp.len() == before {
            return Err(keys_error(KeyProblem::NoPgpKey));
        }
        Ok(())
    }

    /// Reads the lines it understands; others are skipped.
    pub fn parse(text: &str) -> AllowedSigners {
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            // The key starts at its type (`ssh-ed25519`, `ecdsa-sha2-…`,
            // `ssh-rsa`); what comes before names the signer.
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(at) = words.iter().position(|w| {
                w.starts_with("ssh-") || w.starts_with("ecdsa-") || w.starts_with("sk-")
            }) else {
                continue;
            };
            let who = if at > 0 {
                words[0].to_owned()
            } else {
                words.get(at + 2).copied().unwrap_or("").to_owned()
            };
            if let Ok(k) = ssh_key::PublicKey::from_openssh(&words[at..].join(" ")) {
                keys.push((who, k));
            }
        }
        AllowedSigners {
            keys,
            pgp: Vec::new(),
        }
    }

    /// Checks `commit`'s signature; `Ok(signer)` names who signed it.
    fn verify(&self, repo: &Repository, commit: Oid) -> Result<String, Unverified> {
        let (sig, data) = repo
            .extract_signature(&commit, None)
            .map_err(|_| Unverified::NotSigned)?;
        let sig = std::str::from_utf8(&sig).map_err(|_| Unverified::NotText)?;
        if sig.contains("BEGIN PGP SIGNATURE") {
            return self.verify_pgp(sig, &data);
        }
        if !sig.contains("BEGIN SSH SIGNATURE") {
            return Err(Unverified::UnknownFormat);
        }
        let sig: ssh_key::SshSig = sig.parse().map_err(Unverified::BadSsh)?;
        for (who, key) in &self.keys {
            if key.verify("git", &data, &sig).is_ok() {
                return Ok(who.clone());
            }
        }
        Err(Unverified::NotAllowed)
    }

    fn verify_pgp(&self, sig: &str, data: &[u8]) -> Result<String, Unverified> {
        use pgp::composed::Deserializable as _;
        use pgp::types::KeyDetails as _;
        let (sig, _) =
            pgp::composed::StandaloneSignature::from_string(sig).map_err(Unverified::BadPgp)?;
        for key in &self.pgp {
            let by_primary = sig.verify(key, data).is_ok();
            let by_subkey = key
                .public_subkeys
                .iter()
                .any(|sk| sig.verify(sk, data).is_ok());
            if by_primary || by_subkey {
                return Ok(format!("OpenPGP key {}", key.fingerprint()));
            }
        }
        Err(Unverified::NotAllowed)
    }
}

/// A fetched revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The commit id (40 hex digits).
    pub commit: String,
    /// The repository folder to compile (the checkout, or `path` in it).
    pub dir: PathBuf,
}

impl GitSource {
    /// Fetches and checks out the reference; returns the revision. Blocking
    /// (network and disk): call it from `spawn_blocking` in async code.
    pub fn sync(&self) -> Result<Revision, GitError> {
        let repo = self.open()?;
        let shown = redact_url(&self.url);
        let (callbacks, verdict) = self.callbacks()?;
        let fetch_err = |e: git2::Error| GitError::Fetch {
            url: shown.clone(),
            source: match verdict.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                Some(v) => FetchFailure::HostKey(v.replace(self.url.as_str(), &shown)),
                // libgit2 may quote the URL, credentials and all.
                None => Libgit2::redacted(&e, &self.url, &shown).into(),
            },
        };
        let resolve_err = |reason| GitError::Resolve {
            url: shown.clone(),
            reason,
        };
        let mut remote = repo.remote_anonymous(&self.url).map_err(fetch_err)?;
        let (refspecs, target): (Vec<String>, String) = match &self.reference {
            GitRef::DefaultBranch => {
                remote
                    .connect_auth(git2::Direction::Fetch, Some(self.callbacks()?.0), None)
                    .map_err(fetch_err)?;
                let head = remote.default_branch().map_err(fetch_err)?;
                remote.disconnect().map_err(fetch_err)?;
                let head = head
                    .as_str()
                    .ok()
                    .and_then(|h| h.strip_prefix("refs/heads/"))
                    .ok_or_else(|| resolve_err(Unresolved::NoDefaultBranch))?
                    .to_owned();
                let local = format!("refs/meshplan/branches/{head}");
                (vec![format!("+refs/heads/{head}:{local}")], local)
            }
            GitRef::Branch(b) => {
                let local = format!("refs/meshplan/branches/{b}");
                (vec![format!("+refs/heads/{b}:{local}")], local)
            }
            GitRef::Tag(t) => {
                let local = format!("refs/meshplan/tags/{t}");
                (vec![format!("+refs/tags/{t}:{local}")], local)
            }
            GitRef::Commit(_) => (
                vec![
                    "+refs/heads/*:refs/meshplan/branches/*".into(),
                    "+refs/tags/*:refs/meshplan/tags/*".into(),
                ],
                String::new(),
            ),
        };
        let mut fo = FetchOptions::new();
        fo.remote_callbacks(callbacks);
        fo.download_tags(AutotagOption::None);
        fo.update_fetchhead(false);
        if self.shallow && !matches!(self.reference, GitRef::Commit(_)) {
            fo.depth(1);
        }
        let specs: Vec<&str> = refspecs.iter().map(String::as_str).collect();
        remote
            .fetch(&specs, Some(&mut fo), None)
            .map_err(fetch_err)?;

        let commit = match &self.reference {
            GitRef::Commit(c) => {
                let obj = repo
                    .revparse_single(c)
                    .map_err(|_| resolve_err(Unresolved::NoCommit(c.clone())))?;
                obj.peel_to_commit()
                    .map_err(|e| resolve_err(Unresolved::NotACommit(Libgit2::of(&e))))?
            }
            _ => {
                let r = repo.find_reference(&target).map_err(|_| {
                    resolve_err(match &self.reference {
                        GitRef::Tag(t) => Unresolved::NoTag(t.clone()),
                        GitRef::Branch(b) => Unresolved::NoBranch(b.clone()),
                        _ => Unresolved::DefaultBranchNotFetched,
                    })
                })?;
                r.peel_to_commit()
                    .map_err(|e| resolve_err(Unresolved::NotACommit(Libgit2::of(&e))))?
            }
        };
        // Verified before anything of it reaches the work tree: a refused
        // commit leaves the last good checkout as it was.
        if let Some(signers) = &self.signers {
            signers
                .verify(&repo, commit.id())
                .map_err(|reason| GitError::Unsigned {
                    commit: commit.id().to_string(),
                    reason,
                })?;
        }
        self.checkout(&repo, commit.id())?;
        let dir = match &self.path {
            Some(p) => self.checkout.join(p),
            None => self.checkout.clone(),
        };
        if !dir.is_dir() {
            return Err(resolve_err(Unresolved::NoFolder {
                commit: commit.id().to_string(),
                path: self.path.clone().unwrap_or_default(),
            }));
        }
        Ok(Revision {
            commit: commit.id().to_string(),
            dir,
        })
    }

    fn open(&self) -> Result<Repository, GitError> {
        let config = |e: git2::Error| GitError::Open {
            path: self.checkout.clone(),
            source: Libgit2::of(&e),
        };
        match Repository::open(&self.checkout) {
            Ok(r) => Ok(r),
            Err(_) => {
                std::fs::create_dir_all(&self.checkout).map_err(|source| GitError::Io {
                    action: "create",
                    path: self.checkout.clone(),
                    source,
                })?;
                Repository::init(&self.checkout).map_err(config)
            }
        }
    }

    /// Makes the work tree exactly the commit's tree: files of the previous
    /// revision that the new one lacks are removed, local edits discarded.
    fn checkout(&self, repo: &Repository, id: Oid) -> Result<(), GitError> {
        let err = |e: git2::Error| GitError::Checkout {
            commit: id.to_string(),
            source: Libgit2::of(&e),
        };
        let obj = repo.find_object(id, None).map_err(err)?;
        let mut co = CheckoutBuilder::new();
        co.force().remove_untracked(true).remove_ignored(true);
        repo.set_head_detached(id).map_err(err)?;
        repo.reset(&obj, git2::ResetType::Hard, Some(&mut co))
            .map_err(err)?;
        Ok(())
    }

    /// The callbacks, and where the host-key check leaves its verdict
    /// (libgit2 replaces a callback's error with a generic message).
    fn callbacks(&self) -> Result<(RemoteCallbacks<'static>, Verdict), GitError> {
        let verdict: Verdict = Verdict::default();
        let said = verdict.clone();
        let mut cb = RemoteCallbacks::new();
        let auth = self.auth.clone();
        let mut tries = 0;
        cb.credentials(move |_url, user, allowed| {
            // libgit2 asks again after a rejection: once is enough.
            tries += 1;
            if tries > 1 {
                return Err(git2::Error::from_str(
                    "authentication failed: credentials rejected",
                ));
            }
            match &auth {
                GitAuth::None => Err(git2::Error::from_str(
                    "the server asks for credentials and none are configured",
                )),
                GitAuth::Basic { username, password }
                    if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) =>
                {
                    Cred::userpass_plaintext(username, password.expose())
                }
                GitAuth::Token(token) if allowed.contains(CredentialType::USER_PASS_PLAINTEXT) => {
                    Cred::userpass_plaintext("x-access-token", token.expose())
                }
                GitAuth::SshKey { private_key, .. }
                    if allowed.contains(CredentialType::SSH_KEY) =>
                {
                    Cred::ssh_key(user.unwrap_or("git"), None, private_key, None)
                }
                _ => Err(git2::Error::from_str(
                    "the server asks for a kind of credentials other than those configured",
                )),
            }
        });
        let known_hosts = match &self.auth {
            GitAuth::SshKey { known_hosts, .. } => Some(
                std::fs::read_to_string(known_hosts).map_err(|source| GitError::Io {
                    action: "read known_hosts",
                    path: known_hosts.clone(),
                    source,
                })?,
            ),
            _ => None,
        };
        let port = ssh_port(&self.url);
        cb.certificate_check(move |cert, host| {
            let Some(hk) = cert.as_hostkey() else {
                // TLS: libgit2 verifies against the system's roots.
                return Ok(CertificateCheckStatus::CertificatePassthrough);
            };
            let Some(known) = &known_hosts else {
                return Err(git2::Error::from_str(
                    "ssh needs a known_hosts file to verify the server's host key",
                ));
            };
            let key = hk
                .hostkey()
                .ok_or_else(|| git2::Error::from_str("the server offered no host key"))?;
            let name = match port {
                Some(p) if p != 22 => format!("[{host}]:{p}"),
                _ => host.to_owned(),
            };
            let refusal = match known_hosts_trust(known, &name, key) {
                Trust::Trusted => return Ok(CertificateCheckStatus::CertificateOk),
                Trust::Changed => format!(
                    "the host key of {name} does not match known_hosts: refusing to connect (the key changed, or someone is in the middle)"
                ),
                Trust::Unknown => format!(
                    "{name} is not in known_hosts: refusing to connect (add its key, e.g. from ssh-keyscan, after checking it)"
                ),
            };
            *said.lock().unwrap_or_else(|p| p.into_inner()) = Some(refusal.clone());
            Err(git2::Error::from_str(&refusal))
        });
        Ok((cb, verdict))
    }
}

/// A host-key refusal, kept for the error message.
type Verdict = std::sync::Arc<std::sync::Mutex<Option<String>>>;

#[derive(Debug, PartialEq, Eq)]
enum Trust {
    Trusted,
    /// The host is listed with other keys only.
    Changed,
    Unknown,
}

/// Whether `key` (the raw key blob) is listed for `host` (`name` or
/// `[name]:port`), in plain or hashed (`|1|salt|hash`) entries.
fn known_hosts_trust(known_hosts: &str, host: &str, key: &[u8]) -> Trust {
    let offered = base64::engine::general_purpose::STANDARD.encode(key);
    let mut listed = false;
    for line in known_hosts.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(hosts), Some(_kind), Some(k)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if hosts.split(',').any(|h| host_matches(h, host)) {
            if k == offered {
                return Trust::Trusted;
            }
            listed = true;
        }
    }
    if listed {
        Trust::Changed
    } else {
        Trust::Unknown
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    use hmac::{Hmac, Mac};
    if let Some(hashed) = pattern.strip_prefix("|1|") {
        let Some((salt, hash)) = hashed.split_once('|') else {
            return false;
        };
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else {
            return false;
        };
        mac.update(host.as_bytes());
        return mac.verify_slice(&hash).is_ok();
    }
    pattern == host
}

/// The port of an `ssh://` URL.
fn ssh_port(url: &str) -> Option<u16> {
    let rest = url.strip_prefix("ssh://")?;
    let authority = rest.split('/').next()?;
    let hostport = authority.rsplit('@').next()?;
    hostport.rsplit_once(':')?.1.parse().ok()
}

/// A URL as it may be shown: without user info (`https://user:pw@host/x`
/// → `https://host/x`, scp-style `user:pw@host:x` → `host:x`) and with the
/// values of its query masked (`?token=…` → `?token=<redacted>`).
pub fn redact_url(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((u, q)) => (u, Some(q)),
        None => (url, None),
    };
    let mut shown = match url.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let host = authority.rsplit('@').next().unwrap_or(authority);
            if path.is_empty() && !rest.contains('/') {
                format!("{scheme}://{host}")
            } else {
                format!("{scheme}://{host}/{path}")
            }
        }
        // scp-style: user info ends at the last `@` before any `/` (a
        // local path such as `/srv/a@b` has a `/` first).
        None => {
            let before_slash = url.split('/').next().unwrap_or(url);
            match before_slash.rfind('@') {
                Some(at) => url[at + 1..].to_owned(),
                None => url.to_owned(),
            }
        }
    };
    if let Some(q) = query {
        let masked: Vec<String> = q
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) => format!("{k}=<redacted>"),
                None => "<redacted>".to_owned(),
            })
            .collect();
        shown.push('?');
        shown.push_str(&masked.join("&"));
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_signers_read_both_file_formats() {
        let key = "AAAAC3NzaC1lZDI1NTE5AAAAIGmv2Y0ZqYQ8ZbqzM1lrE5c1J0cFq2Qy0n8b1s2Jm3dQ";
        let text = format!(
            "# comment\nalice@example.com ssh-ed25519 {key}\nbob@example.com,carol namespaces=\"git\" ssh-ed25519 {key}\nssh-ed25519 {key} dave@laptop\nnot a key line\n"
        );
        let who: Vec<String> = AllowedSigners::parse(&text)
            .keys
            .into_iter()
            .map(|(w, _)| w)
            .collect();
        assert_eq!(
            who,
            ["alice@example.com", "bob@example.com,carol", "dave@laptop"]
        );
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            redact_url("https://user:hunter2@git.example.com/org/repo.git"),
            "https://git.example.com/org/repo.git"
        );
        assert_eq!(redact_url("ssh://git@host:2222/r"), "ssh://host:2222/r");
        assert_eq!(redact_url("/srv/repo"), "/srv/repo");
        assert_eq!(redact_url("ssh://u:hunter2@host/r"), "ssh://host/r");
        assert_eq!(redact_url("u:hunter2@host:org/r.git"), "host:org/r.git");
        assert_eq!(redact_url("git@host:org/r.git"), "host:org/r.git");
        assert_eq!(redact_url("/srv/a@b/repo"), "/srv/a@b/repo");
        assert_eq!(
            redact_url("https://host/r.git?token=hunter2&ref=main"),
            "https://host/r.git?token=<redacted>&ref=<redacted>"
        );
    }

    #[test]
    fn secrets_never_print() {
        let auth = GitAuth::Token(Secret::new("hunter2\n"));
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert_eq!(Secret::new("hunter2\n").expose(), "hunter2");
    }

    #[test]
    fn reads_the_port_of_ssh_urls() {
        assert_eq!(ssh_port("ssh://git@127.0.0.1:2222/srv/r.git"), Some(2222));
        assert_eq!(ssh_port("ssh://git@host/srv/r.git"), None);
        assert_eq!(ssh_port("https://host:8443/r"), None);
    }

    #[test]
    fn known_hosts_trusts_listed_keys_and_flags_changed_ones() {
        let key = b"key-bytes";
        let b64 = base64::engine::general_purpose::STANDARD.encode(key);
        let kh = format!("# comment\n[127.0.0.1]:2222 ssh-ed25519 {b64}\nother ssh-ed25519 AAAA\n");
        assert_eq!(
            known_hosts_trust(&kh, "[127.0.0.1]:2222", key),
            Trust::Trusted
        );
        assert_eq!(known_hosts_trust(&kh, "other", key), Trust::Changed);
        assert_eq!(known_hosts_trust(&kh, "127.0.0.1", key), Trust::Unknown);
    }

    #[test]
    fn known_hosts_understands_hashed_host_names() {
        use hmac::{Hmac, Mac};
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b"0123456789abcdefghij";
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(salt).unwrap();
        mac.update(b"git.example.com");
        let hash = mac.finalize().into_bytes();
        let kh = format!(
            "|1|{}|{} ssh-ed25519 {}\n",
            b64.encode(salt),
            b64.encode(hash),
            b64.encode(b"k")
        );
        assert_eq!(
            known_hosts_trust(&kh, "git.example.com", b"k"),
            Trust::Trusted
        );
        assert_eq!(
            known_hosts_trust(&kh, "git.example.org", b"k"),
            Trust::Unknown
        );
    }
}
