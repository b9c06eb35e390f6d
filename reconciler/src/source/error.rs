//! Why a Git source could not give a revision, as types: what failed at
//! each level is its own error, the cause below it its `source()`, so a
//! caller prints the chain ([`crate::error_chain`]) and a test matches a
//! variant. libgit2's errors are carried as [`Libgit2`]: redacted (libgit2
//! may quote the URL, credentials and all) and explained by class.

use std::path::PathBuf;

/// A Git source's errors.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A file or folder the operator named cannot be read or created.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// `read the allowed signers`, `create`, …
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A key file holds no key meshplan can verify with.
    #[error("{}", path.display())]
    Keys {
        path: PathBuf,
        #[source]
        problem: KeyProblem,
    },
    /// The checkout folder cannot serve as a repository.
    #[error("cannot use {} as the checkout", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: Libgit2,
    },
    /// `url` is shown without credentials.
    #[error("fetching {url}")]
    Fetch {
        url: String,
        #[source]
        source: FetchFailure,
    },
    /// The reference does not name a commit, or the commit lacks the
    /// folder to compile.
    #[error("{url}")]
    Resolve {
        url: String,
        #[source]
        reason: Unresolved,
    },
    #[error("checking out {commit}")]
    Checkout {
        commit: String,
        #[source]
        source: Libgit2,
    },
    /// The head commit failed signature verification: nothing of it is
    /// checked out.
    #[error("refusing commit {commit}")]
    Unsigned {
        commit: String,
        #[source]
        reason: Unverified,
    },
}

/// A libgit2 error, its message redacted, named by its class for context
/// (`network: …`, `ssh: …`, `http: …`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Libgit2 {
    message: String,
}

impl Libgit2 {
    /// `e`, with `secret_url` (if libgit2 quoted it) shown as `shown_url`.
    pub(crate) fn redacted(e: &git2::Error, secret_url: &str, shown_url: &str) -> Libgit2 {
        let msg = e.message().trim_end_matches('.');
        let msg = match secret_url.is_empty() {
            true => msg.to_owned(),
            false => msg.replace(secret_url, shown_url),
        };
        let message = match e.class() {
            git2::ErrorClass::Net => format!("network: {msg}"),
            git2::ErrorClass::Ssh => format!("ssh: {msg}"),
            git2::ErrorClass::Http => format!("http: {msg}"),
            _ => msg,
        };
        Libgit2 { message }
    }

    /// `e` where no URL is involved.
    pub(crate) fn of(e: &git2::Error) -> Libgit2 {
        Libgit2::redacted(e, "", "")
    }
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchFailure {
    /// The server's host key is not the one `known_hosts` pins (libgit2
    /// replaces a callback's error with a generic message, so meshplan
    /// keeps its own verdict).
    #[error("{0}")]
    HostKey(String),
    #[error(transparent)]
    Git(#[from] Libgit2),
}

/// Why the reference gave no usable commit.
#[derive(Debug, thiserror::Error)]
pub enum Unresolved {
    #[error("the remote has no default branch")]
    NoDefaultBranch,
    #[error("the default branch was not fetched")]
    DefaultBranchNotFetched,
    #[error("no branch {0}")]
    NoBranch(String),
    #[error("no tag {0}")]
    NoTag(String),
    #[error("no commit {0} on any branch or tag")]
    NoCommit(String),
    #[error("not a commit")]
    NotACommit(#[source] Libgit2),
    #[error("commit {commit} has no folder {}", path.display())]
    NoFolder { commit: String, path: PathBuf },
}

/// Why a key file is of no use.
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error("lists no SSH public key: every commit would be refused")]
    NoSshKey,
    #[error("not ASCII-armored OpenPGP public keys")]
    NotArmored(#[source] pgp::errors::Error),
    #[error("an unreadable OpenPGP key")]
    UnreadablePgpKey(#[source] pgp::errors::Error),
    #[error("holds no OpenPGP public key")]
    NoPgpKey,
}

/// Why a commit's signature is not accepted.
#[derive(Debug, thiserror::Error)]
pub enum Unverified {
    #[error("it is not signed")]
    NotSigned,
    #[error("its signature is not text")]
    NotText,
    #[error("it is signed in a format meshplan cannot verify (SSH and OpenPGP signatures are)")]
    UnknownFormat,
    #[error("its SSH signature cannot be read")]
    BadSsh(#[source] ssh_key::Error),
    #[error("its OpenPGP signature cannot be read")]
    BadPgp(#[source] pgp::errors::Error),
    #[error("its signature is not by an allowed signer")]
    NotAllowed,
}
