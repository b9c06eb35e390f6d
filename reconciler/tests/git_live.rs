//! The Git source against real servers: `git daemon`, `git http-backend`
//! behind basic/token auth, and `sshd` with key auth and known_hosts.
//! Needs the test environment.

use std::path::Path;

use meshplan_reconciler::source::error::Unverified;
use meshplan_reconciler::source::git::{GitAuth, GitError, GitRef, GitSource, Secret};
use meshplan_testenv::{TestEnv, TestRepo};

/// What a log or status shows of a Git error: every level's part.
trait Chain {
    fn chain(&self) -> String;
}

impl Chain for meshplan_reconciler::source::git::GitError {
    fn chain(&self) -> String {
        meshplan_reconciler::error_chain(self)
    }
}

fn source(url: String, reference: GitRef, auth: GitAuth, checkout: &Path) -> GitSource {
    GitSource {
        url,
        reference,
        path: None,
        auth,
        shallow: false,
        checkout: checkout.to_path_buf(),
        signers: None,
    }
}

fn repo_with_intent() -> (TestRepo, String) {
    let repo = TestEnv::get().git.create_repo("src").unwrap();
    let c1 = repo
        .commit(
            &[
                ("meshplan.yaml", Some("targets: [istio]\n")),
                ("apps/web.yaml", Some("v: 1\n")),
            ],
            "first",
        )
        .unwrap();
    (repo, c1)
}

fn ssh_auth(known_hosts: &Path) -> GitAuth {
    GitAuth::SshKey {
        private_key: TestEnv::get().git.ssh_key.clone(),
        known_hosts: known_hosts.to_path_buf(),
    }
}

#[test]
fn every_transport_fetches_the_branch_tip() {
    let git = &TestEnv::get().git;
    let (repo, c1) = repo_with_intent();
    let cases: Vec<(&str, String, GitAuth)> = vec![
        (
            "file",
            format!("file://{}", repo.bare.display()),
            GitAuth::None,
        ),
        ("git daemon", git.daemon_url_of(&repo), GitAuth::None),
        (
            "http basic",
            git.http_url_of(&repo),
            GitAuth::Basic {
                username: git.http_user.clone(),
                password: Secret::new(git.http_password.clone()),
            },
        ),
        (
            "http token",
            git.http_url_of(&repo),
            GitAuth::Token(Secret::new(git.http_token.clone())),
        ),
        ("ssh", git.ssh_url_of(&repo), ssh_auth(&git.known_hosts)),
    ];
    for (what, url, auth) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let rev = source(url, GitRef::Branch("main".into()), auth, tmp.path())
            .sync()
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(rev.commit, c1, "{what}");
        assert_eq!(
            std::fs::read_to_string(rev.dir.join("apps/web.yaml")).unwrap(),
            "v: 1\n",
            "{what}"
        );
    }
}

#[test]
fn a_branch_follows_new_commits_and_force_pushed_history() {
    let git = &TestEnv::get().git;
    let (repo, c1) = repo_with_intent();
    let tmp = tempfile::tempdir().unwrap();
    let src = source(
        git.daemon_url_of(&repo),
        GitRef::DefaultBranch,
        GitAuth::None,
        tmp.path(),
    );
    assert_eq!(src.sync().unwrap().commit, c1);

    let c2 = repo
        .commit(&[("apps/web.yaml", Some("v: 2\n"))], "second")
        .unwrap();
    let rev = src.sync().unwrap();
    assert_eq!(rev.commit, c2);
    assert_eq!(
        std::fs::read_to_string(rev.dir.join("apps/web.yaml")).unwrap(),
        "v: 2\n"
    );

    // History rewritten: the old files are gone from the checkout too.
    let c3 = repo
        .force_push_new_history(
            &[
                ("meshplan.yaml", Some("targets: [linkerd]\n")),
                ("apps/web.yaml", None),
            ],
            "rewritten",
        )
        .unwrap();
    let rev = src.sync().unwrap();
    assert_eq!(rev.commit, c3);
    let local = git2::Repository::open(&rev.dir).unwrap();
    assert_eq!(
        local
            .head()
            .unwrap()
            .peel_to_commit()
            .unwrap()
            .parent_count(),
        0
    );
    assert!(!rev.dir.join("apps/web.yaml").exists());
    // Local edits in the checkout do not survive a sync either.
    std::fs::write(rev.dir.join("meshplan.yaml"), "tampered").unwrap();
    let rev = src.sync().unwrap();
    assert_eq!(
        std::fs::read_to_string(rev.dir.join("meshplan.yaml")).unwrap(),
        "targets: [linkerd]\n"
    );
}

#[test]
fn tags_and_commits_stay_pinned() {
    let git = &TestEnv::get().git;
    let (repo, c1) = repo_with_intent();
    repo.tag("v1").unwrap();
    let c2 = repo
        .commit(&[("apps/web.yaml", Some("v: 2\n"))], "second")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let url = git.daemon_url_of(&repo);
    let tag = source(
        url.clone(),
        GitRef::Tag("v1".into()),
        GitAuth::None,
        &tmp.path().join("t"),
    );
    assert_eq!(tag.sync().unwrap().commit, c1);
    let pinned = source(
        url.clone(),
        GitRef::Commit(c1[..10].into()),
        GitAuth::None,
        &tmp.path().join("c"),
    );
    assert_eq!(pinned.sync().unwrap().commit, c1);
    repo.commit(&[("apps/web.yaml", Some("v: 3\n"))], "third")
        .unwrap();
    assert_eq!(tag.sync().unwrap().commit, c1);
    assert_eq!(pinned.sync().unwrap().commit, c1);

    let missing = source(
        url.clone(),
        GitRef::Tag("v9".into()),
        GitAuth::None,
        &tmp.path().join("m"),
    );
    let err = missing.sync().unwrap_err().chain();
    assert!(err.contains("v9"), "{err}");
    let unknown = source(
        url,
        GitRef::Commit("0123456789abcdef".into()),
        GitAuth::None,
        &tmp.path().join("u"),
    );
    let err = unknown.sync().unwrap_err().chain();
    assert!(err.contains("no commit 0123456789abcdef"), "{err}");
    let _ = c2;
}

#[test]
fn a_folder_inside_the_repository_is_the_revision() {
    let git = &TestEnv::get().git;
    let (repo, _) = repo_with_intent();
    let tmp = tempfile::tempdir().unwrap();
    let mut src = source(
        git.daemon_url_of(&repo),
        GitRef::Branch("main".into()),
        GitAuth::None,
        tmp.path(),
    );
    src.path = Some("apps".into());
    let rev = src.sync().unwrap();
    assert!(rev.dir.ends_with("apps"));
    assert!(rev.dir.join("web.yaml").is_file());
    src.path = Some("nope".into());
    let err = src.sync().unwrap_err().chain();
    assert!(err.contains("has no folder nope"), "{err}");
}

#[test]
fn a_shallow_fetch_gets_only_the_tip() {
    let git = &TestEnv::get().git;
    let (repo, _) = repo_with_intent();
    let c2 = repo
        .commit(&[("apps/web.yaml", Some("v: 2\n"))], "second")
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut src = source(
        git.daemon_url_of(&repo),
        GitRef::Branch("main".into()),
        GitAuth::None,
        tmp.path(),
    );
    src.shallow = true;
    assert_eq!(src.sync().unwrap().commit, c2);
    let local = git2::Repository::open(tmp.path()).unwrap();
    assert!(local.is_shallow());
}

#[test]
fn wrong_credentials_are_refused_and_never_shown() {
    let git = &TestEnv::get().git;
    let (repo, _) = repo_with_intent();
    let tmp = tempfile::tempdir().unwrap();
    for auth in [
        GitAuth::Basic {
            username: git.http_user.clone(),
            password: Secret::new("hunter2-wrong"),
        },
        GitAuth::Token(Secret::new("hunter2-wrong")),
        GitAuth::None,
    ] {
        let err = source(
            git.http_url_of(&repo),
            GitRef::Branch("main".into()),
            auth,
            tmp.path(),
        )
        .sync()
        .unwrap_err()
        .chain();
        assert!(
            err.starts_with(&format!("fetching {}", git.http_url_of(&repo))),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "a secret leaked: {err}");
    }
    // Credentials in the URL are not shown either.
    let url = git
        .http_url_of(&repo)
        .replacen("://", "://user:hunter2@", 1);
    let err = source(
        url,
        GitRef::Branch("main".into()),
        GitAuth::None,
        tmp.path(),
    )
    .sync()
    .unwrap_err()
    .chain();
    assert!(!err.contains("hunter2"), "a secret leaked: {err}");
}

#[test]
fn an_unknown_ssh_host_key_is_refused() {
    let git = &TestEnv::get().git;
    let (repo, _) = repo_with_intent();
    let tmp = tempfile::tempdir().unwrap();
    let err = source(
        git.ssh_url_of(&repo),
        GitRef::Branch("main".into()),
        ssh_auth(&git.wrong_known_hosts),
        tmp.path(),
    )
    .sync()
    .unwrap_err()
    .chain();
    assert!(err.contains("does not match known_hosts"), "{err}");
    let empty = tmp.path().join("empty_known_hosts");
    std::fs::write(&empty, "").unwrap();
    let err = source(
        git.ssh_url_of(&repo),
        GitRef::Branch("main".into()),
        ssh_auth(&empty),
        &tmp.path().join("c2"),
    )
    .sync()
    .unwrap_err()
    .chain();
    assert!(err.contains("is not in known_hosts"), "{err}");
}

#[test]
fn only_commits_signed_by_an_allowed_key_are_used() {
    use meshplan_reconciler::source::git::AllowedSigners;
    let git = &TestEnv::get().git;
    let repo = git.create_repo("signed").unwrap();
    let signed = repo
        .commit_signed(
            &[("meshplan.yaml", Some("targets: [istio]\n"))],
            "signed",
            &git.ssh_key,
        )
        .unwrap();
    let allowed = format!(
        "platform@example.com {}",
        std::fs::read_to_string(&git.ssh_public_key).unwrap().trim()
    );
    let tmp = tempfile::tempdir().unwrap();
    let mut src = source(
        git.daemon_url_of(&repo),
        GitRef::Branch("main".into()),
        GitAuth::None,
        tmp.path(),
    );
    src.signers = Some(AllowedSigners::parse(&allowed));
    assert_eq!(src.sync().unwrap().commit, signed);

    // Unsigned: refused, and the checkout keeps the signed revision.
    let unsigned = repo
        .commit(
            &[("meshplan.yaml", Some("targets: [linkerd]\n"))],
            "unsigned",
        )
        .unwrap();
    let e = src.sync().unwrap_err();
    assert!(
        matches!(
            &e,
            GitError::Unsigned {
                reason: Unverified::NotSigned,
                ..
            }
        ),
        "{e:?}"
    );
    let err = e.chain();
    assert_eq!(err, format!("refusing commit {unsigned}: it is not signed"));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("meshplan.yaml")).unwrap(),
        "targets: [istio]\n"
    );

    // Signed by a key not in the list: refused.
    let stranger = repo
        .commit_signed(
            &[("meshplan.yaml", Some("targets: [cilium]\n"))],
            "stranger",
            &git.ssh_wrong_key,
        )
        .unwrap();
    let err = src.sync().unwrap_err().chain();
    assert_eq!(
        err,
        format!("refusing commit {stranger}: its signature is not by an allowed signer")
    );

    // Signed again by the allowed key: used.
    let good = repo
        .commit_signed(
            &[("meshplan.yaml", Some("targets: [linkerd]\n"))],
            "good",
            &git.ssh_key,
        )
        .unwrap();
    assert_eq!(src.sync().unwrap().commit, good);
}

/// A GnuPG home with a fresh signing key; returns (home, fingerprint,
/// armored public key).
fn gpg_key(dir: &Path, name: &str) -> (std::path::PathBuf, String, String) {
    let home = dir.join(name);
    std::fs::create_dir_all(&home).unwrap();
    let gpg = |args: &[&str]| {
        let out = std::process::Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .expect("gpg runs (scripts/env/install.sh installs gnupg)");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    gpg(&[
        "--quick-gen-key",
        &format!("{name} <{name}@meshplan.invalid>"),
        "ed25519",
        "sign",
        "never",
    ]);
    let fpr = gpg(&["--list-keys", "--with-colons"])
        .lines()
        .find_map(|l| {
            l.strip_prefix("fpr:::::::::")
                .map(|f| f.trim_end_matches(':').to_owned())
        })
        .unwrap();
    let armored = gpg(&["--armor", "--export", &fpr]);
    (home, fpr, armored)
}

#[test]
fn openpgp_signed_commits_are_verified_too() {
    use meshplan_reconciler::source::git::AllowedSigners;
    let git = &TestEnv::get().git;
    let tmp = tempfile::tempdir().unwrap();
    let (home, fpr, public) = gpg_key(tmp.path(), "release");
    let (other_home, other_fpr, _) = gpg_key(tmp.path(), "stranger");
    let keys = tmp.path().join("keys.asc");
    std::fs::write(&keys, &public).unwrap();

    let repo = git.create_repo("gpg").unwrap();
    let good = repo
        .commit_gpg_signed(
            &[("meshplan.yaml", Some("targets: [istio]\n"))],
            "signed",
            &home,
            &fpr,
        )
        .unwrap();
    let mut signers = AllowedSigners::default();
    signers.add_pgp_file(&keys).unwrap();
    let mut src = source(
        git.daemon_url_of(&repo),
        GitRef::Branch("main".into()),
        GitAuth::None,
        &tmp.path().join("co"),
    );
    src.signers = Some(signers);
    assert_eq!(src.sync().unwrap().commit, good);

    let bad = repo
        .commit_gpg_signed(
            &[("meshplan.yaml", Some("targets: [linkerd]\n"))],
            "stranger",
            &other_home,
            &other_fpr,
        )
        .unwrap();
    let err = src.sync().unwrap_err().chain();
    assert_eq!(
        err,
        format!("refusing commit {bad}: its signature is not by an allowed signer")
    );
    let unsigned = repo
        .commit(
            &[("meshplan.yaml", Some("targets: [cilium]\n"))],
            "unsigned",
        )
        .unwrap();
    assert_eq!(
        src.sync().unwrap_err().chain(),
        format!("refusing commit {unsigned}: it is not signed")
    );
    // gpg started an agent per home: stop them.
    for h in [&home, &other_home] {
        let _ = std::process::Command::new("gpgconf")
            .env("GNUPGHOME", h)
            .args(["--kill", "all"])
            .status();
    }
}
