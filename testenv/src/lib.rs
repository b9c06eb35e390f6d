//! meshplan's test environment, seen from a test.
//!
//! `scripts/env/up.sh` starts real services on random loopback ports —
//! etcd and kube-apiserver 1.20.2 with the upstream CRDs, Prometheus
//! scraping the [`metrics`] generator, and Git over `git://`, smart HTTP
//! ([`githttp`]) and `ssh://` — and writes their addresses and credentials
//! to `env.json`. [`TestEnv::get`] reads it (from `$MESHPLAN_TESTENV`, or
//! `target/testenv/env.json` of this workspace) and gives tests clients and
//! URLs. A test that needs the environment and cannot find it panics with a
//! message that says how to start it: it never skips.
//!
//! Helpers follow kube's `e2e` and linkerd's `policy-test`:
//! [`with_temp_ns`], [`wait_for`] with a deadline, fixture builders.

mod backfill;
pub mod crds;
pub mod githttp;
pub mod metrics;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde::Deserialize;

pub use metrics::Workload;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {0}")]
    Io(PathBuf, #[source] std::io::Error),
    #[error("{path}: invalid YAML: {message}")]
    Yaml { path: PathBuf, message: String },
    #[error("{0}")]
    Kube(String, #[source] kube::Error),
    #[error("kubeconfig {0}")]
    Kubeconfig(PathBuf, #[source] kube::config::KubeconfigError),
    #[error("{0}")]
    Http(String, #[source] Box<ureq::Error>),
    #[error("unexpected answer from {0}: {1}")]
    Protocol(String, String),
    #[error("`{0}` failed: {1}")]
    Command(String, String),
    #[error("{0}: not the environment's description")]
    Description(PathBuf, #[source] serde_json::Error),
    #[error("kube-apiserver (pid {0}) is not running")]
    NotRunning(String),
    #[error("unexpected answer from {0}")]
    Answer(String, #[source] BadAnswer),
}

/// Where the running environment is, as `up.sh` wrote it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestEnv {
    /// The environment's state directory (logs, certificates, data).
    pub dir: PathBuf,
    /// An admin (system:masters) kubeconfig.
    pub kubeconfig: PathBuf,
    /// A kubeconfig with the token of the `meshplan` ServiceAccount, bound
    /// to the least-privilege ClusterRole of `deploy/rbac.yaml`.
    pub sa_kubeconfig: PathBuf,
    /// The upstream CRDs installed.
    pub crds: PathBuf,
    pub prometheus_url: String,
    /// The metrics generator (its `/metrics` is scraped every second).
    pub metrics_url: String,
    /// The certificates of the TLS services.
    pub tls: Tls,
    /// A second Prometheus scraping the generator, as managed ones are
    /// reached: HTTPS under `/prometheus`, basic auth and a client
    /// certificate required.
    pub prometheus_tls: PrometheusTls,
    /// A webhook receiver over HTTPS (`scripts/env/hooks.py`).
    pub hooks: Hooks,
    pub git: GitServers,
}

/// The test CA and what it signed (servers: `127.0.0.1`, `localhost`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tls {
    pub ca_file: PathBuf,
    /// A CA that signed none of them.
    pub other_ca_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrometheusTls {
    /// `https://127.0.0.1:PORT/prometheus`.
    pub url: String,
    pub username: String,
    pub password_file: PathBuf,
}

/// The webhook receiver: every POST recorded, one JSON object per line in
/// `log`; 401 unless its `Authorization` is a line of `authorizations` or
/// its path starts with `/open/`; the status its segments `status/NNN` ask
/// for.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hooks {
    /// `https://127.0.0.1:PORT`.
    pub url: String,
    pub authorizations: PathBuf,
    pub log: PathBuf,
}

impl Hooks {
    /// The requests received so far whose path starts with `prefix`.
    pub fn received(&self, prefix: &str) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|r| r["path"].as_str().is_some_and(|p| p.starts_with(prefix)))
            .collect()
    }
}

/// Git served three ways from one directory of bare repositories.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitServers {
    /// The bare repositories (`<root>/<name>.git`).
    pub root: PathBuf,
    /// `git://127.0.0.1:PORT` (git daemon, no auth).
    pub daemon_url: String,
    /// `http://127.0.0.1:PORT` (smart HTTP, basic auth or token).
    pub http_url: String,
    pub http_user: String,
    pub http_password: String,
    pub http_token: String,
    /// `ssh://USER@127.0.0.1:PORT` (sshd, key auth only).
    pub ssh_url: String,
    /// The client key sshd accepts, and its public half.
    pub ssh_key: PathBuf,
    pub ssh_public_key: PathBuf,
    /// A key sshd does not accept.
    pub ssh_wrong_key: PathBuf,
    /// `known_hosts` naming the server's real host key, and one naming
    /// another key for the same host.
    pub known_hosts: PathBuf,
    pub wrong_known_hosts: PathBuf,
}

const HOW_TO_START: &str = "the test environment is not running: run `scripts/test.sh` (starts it, runs every test, stops it), or start it with `scripts/env/up.sh` and point MESHPLAN_TESTENV at the env.json it prints (see docs/testing.md)";

impl TestEnv {
    /// The running environment. Panics, saying how to start it, when there
    /// is none: tests that need it must fail, not skip.
    pub fn get() -> &'static TestEnv {
        static ENV: OnceLock<TestEnv> = OnceLock::new();
        ENV.get_or_init(|| match Self::load() {
            Ok(env) => env,
            Err(why) => {
                let mut text = why.to_string();
                let mut cause = std::error::Error::source(&why);
                while let Some(c) = cause {
                    text.push_str(&format!(": {c}"));
                    cause = c.source();
                }
                panic!("{HOW_TO_START}\n({text})")
            }
        })
    }

    fn load() -> Result<TestEnv, Error> {
        let path = match std::env::var_os("MESHPLAN_TESTENV") {
            Some(p) => PathBuf::from(p),
            None => match std::env::var_os("CARGO_TARGET_DIR") {
                Some(t) => PathBuf::from(t).join("testenv/env.json"),
                None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/testenv/env.json"),
            },
        };
        let text = std::fs::read_to_string(&path).map_err(|e| Error::Io(path.clone(), e))?;
        let env: TestEnv =
            serde_json::from_str(&text).map_err(|e| Error::Description(path.clone(), e))?;
        // A stale env.json from a stopped environment must not pass for a
        // running one.
        let pid_file = env.dir.join("pids/kube-apiserver.pid");
        let pid = std::fs::read_to_string(&pid_file).map_err(|e| Error::Io(pid_file.clone(), e))?;
        if !Path::new(&format!("/proc/{}", pid.trim())).exists() {
            return Err(Error::NotRunning(pid.trim().to_owned()));
        }
        Ok(env)
    }

    /// A client with admin rights.
    pub async fn client(&self) -> Client {
        client_from(&self.kubeconfig)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// A client acting as the `meshplan` ServiceAccount (least privilege).
    pub async fn sa_client(&self) -> Client {
        client_from(&self.sa_kubeconfig)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn prometheus(&self) -> Prometheus {
        Prometheus {
            url: self.prometheus_url.clone(),
        }
    }

    pub fn metrics(&self) -> MetricsControl {
        MetricsControl {
            url: self.metrics_url.clone(),
        }
    }
}

/// An error and every `source()` below it, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(&format!(": {s}"));
        src = s.source();
    }
    msg
}

/// A client from a kubeconfig file.
pub async fn client_from(path: &Path) -> Result<Client, Error> {
    let kc = Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig(path.to_path_buf(), e))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .map_err(|e| Error::Kubeconfig(path.to_path_buf(), e))?;
    Client::try_from(config).map_err(|e| Error::Kube(format!("client for {}", path.display()), e))
}

/// A name no other test of this run uses: `<prefix>-<pid>-<n>`.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs `f` in a fresh namespace, deleted afterwards. (The test apiserver
/// runs without a controller manager, so a deleted namespace stays
/// `Terminating`; its name is never reused.)
pub async fn with_temp_ns<F, Fut, T>(client: &Client, f: F) -> T
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let name = unique_name("test");
    let api: Api<Namespace> = Api::all(client.clone());
    let mut ns = Namespace::default();
    ns.metadata.name = Some(name.clone());
    ns.metadata.labels = Some(BTreeMap::from([(
        "meshplan.dev/test".into(),
        "true".into(),
    )]));
    api.create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    let out = f(name.clone()).await;
    let _ = api.delete(&name, &DeleteParams::default()).await;
    out
}

/// Polls `check` every 100 ms until it returns `Some`, and returns that.
/// Panics after `deadline`, naming what was awaited.
pub async fn wait_for<T, F, Fut>(what: &str, deadline: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The Prometheus HTTP API.
#[derive(Clone, Debug)]
pub struct Prometheus {
    pub url: String,
}

/// One sample of an instant query.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Prometheus {
    /// An instant query; an empty vector when no series matches.
    pub fn query(&self, promql: &str) -> Result<Vec<Sample>, Error> {
        let url = format!("{}/api/v1/query", self.url);
        let body = ureq::get(&url)
            .query("query", promql)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| Error::Http(format!("GET {url}?query={promql}"), Box::new(e)))?;
        parse_vector(&url, &body)
    }
}

/// The samples of an instant-vector answer from `url`.
fn parse_vector(url: &str, body: &str) -> Result<Vec<Sample>, Error> {
    parse_samples(body).map_err(|e| Error::Answer(url.to_owned(), e))
}

/// Why a Prometheus answer holds no samples.
#[derive(Debug, thiserror::Error)]
pub enum BadAnswer {
    #[error("not JSON")]
    Json(#[source] serde_json::Error),
    #[error("{0}")]
    Failed(String),
    #[error("no data")]
    NoData,
    #[error("expected a vector, got {0}")]
    NotAVector(String),
    #[error("a value is not a number")]
    Value(#[source] std::num::ParseFloatError),
}

fn parse_samples(body: &str) -> Result<Vec<Sample>, BadAnswer> {
    #[derive(Deserialize)]
    struct Answer {
        status: String,
        data: Option<Data>,
        error: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Data {
        result_type: String,
        result: Vec<Item>,
    }
    #[derive(Deserialize)]
    struct Item {
        metric: BTreeMap<String, String>,
        value: (f64, String),
    }
    let a: Answer = serde_json::from_str(body).map_err(BadAnswer::Json)?;
    if a.status != "success" {
        return Err(BadAnswer::Failed(a.error.unwrap_or(a.status)));
    }
    let data = a.data.ok_or(BadAnswer::NoData)?;
    if data.result_type != "vector" {
        return Err(BadAnswer::NotAVector(data.result_type));
    }
    data.result
        .into_iter()
        .map(|i| {
            let value = i.value.1.parse::<f64>().map_err(BadAnswer::Value)?;
            Ok(Sample {
                labels: i.metric,
                value,
            })
        })
        .collect()
}

/// Drives the metrics generator.
#[derive(Clone, Debug)]
pub struct MetricsControl {
    pub url: String,
}

impl MetricsControl {
    /// Sets workloads' behaviour from now on (others keep theirs).
    pub fn set(&self, workloads: &[Workload]) -> Result<(), Error> {
        let url = format!("{}/workloads", self.url);
        let body = serde_json::to_string(workloads).expect("workloads serialize");
        ureq::put(&url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| Error::Http(format!("PUT {url}"), Box::new(e)))?;
        Ok(())
    }

    /// The exposition text, as Prometheus scrapes it.
    pub fn scrape(&self) -> Result<String, Error> {
        let url = format!("{}/metrics", self.url);
        ureq::get(&url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string())
            .map_err(|e| Error::Http(format!("GET {url}"), Box::new(e)))
    }
}

/// A bare repository served by every Git server, and a way to commit to it.
#[derive(Debug)]
pub struct TestRepo {
    pub name: String,
    pub bare: PathBuf,
    /// A work tree to commit from, removed on drop.
    work: tempfile::TempDir,
}

fn git(dir: &Path, args: &[&str]) -> Result<String, Error> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "meshplan test")
        .env("GIT_AUTHOR_EMAIL", "test@meshplan.invalid")
        .env("GIT_COMMITTER_NAME", "meshplan test")
        .env("GIT_COMMITTER_EMAIL", "test@meshplan.invalid")
        .output()
        .map_err(|e| Error::Io(PathBuf::from("git"), e))?;
    if !out.status.success() {
        return Err(Error::Command(
            format!("git {}", args.join(" ")),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

impl GitServers {
    /// A new, empty bare repository on branch `main`.
    pub fn create_repo(&self, prefix: &str) -> Result<TestRepo, Error> {
        let name = unique_name(prefix);
        let bare = self.root.join(format!("{name}.git"));
        std::fs::create_dir_all(&bare).map_err(|e| Error::Io(bare.clone(), e))?;
        git(&bare, &["init", "-q", "--bare", "-b", "main"])?;
        let work = tempfile::Builder::new()
            .prefix(&format!("{name}-"))
            .tempdir()
            .map_err(|e| Error::Io(self.root.clone(), e))?;
        git(work.path(), &["init", "-q", "-b", "main"])?;
        git(
            work.path(),
            &["remote", "add", "origin", &bare.to_string_lossy()],
        )?;
        Ok(TestRepo { name, bare, work })
    }

    pub fn daemon_url_of(&self, repo: &TestRepo) -> String {
        format!("{}/{}.git", self.daemon_url, repo.name)
    }

    pub fn http_url_of(&self, repo: &TestRepo) -> String {
        format!("{}/{}.git", self.http_url, repo.name)
    }

    pub fn ssh_url_of(&self, repo: &TestRepo) -> String {
        format!("{}{}", self.ssh_url, repo.bare.display())
    }
}

impl TestRepo {
    /// Writes `files` (path, contents; `None` deletes), commits and pushes
    /// to `main`. Returns the new commit's id.
    pub fn commit(&self, files: &[(&str, Option<&str>)], message: &str) -> Result<String, Error> {
        let dir = self.work.path();
        for (path, contents) in files {
            let p = dir.join(path);
            match contents {
                Some(c) => {
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent).map_err(|e| Error::Io(p.clone(), e))?;
                    }
                    std::fs::write(&p, c).map_err(|e| Error::Io(p.clone(), e))?;
                }
                None => {
                    let _ = std::fs::remove_file(&p);
                }
            }
        }
        git(dir, &["add", "-A"])?;
        git(dir, &["commit", "-q", "--allow-empty", "-m", message])?;
        git(dir, &["push", "-q", "--force", "origin", "HEAD:main"])?;
        git(dir, &["rev-parse", "HEAD"])
    }

    /// As [`TestRepo::commit`], with the commit SSH-signed by `key` (a
    /// private key file).
    pub fn commit_signed(
        &self,
        files: &[(&str, Option<&str>)],
        message: &str,
        key: &Path,
    ) -> Result<String, Error> {
        let dir = self.work.path();
        let key = key.to_string_lossy().into_owned();
        git(dir, &["config", "gpg.format", "ssh"])?;
        git(dir, &["config", "user.signingkey", &key])?;
        git(dir, &["config", "commit.gpgsign", "true"])?;
        let id = self.commit(files, message);
        git(dir, &["config", "commit.gpgsign", "false"])?;
        id
    }

    /// As [`TestRepo::commit`], with the commit OpenPGP-signed by the key
    /// `key` (a fingerprint) of the GnuPG home `gnupg_home`.
    pub fn commit_gpg_signed(
        &self,
        files: &[(&str, Option<&str>)],
        message: &str,
        gnupg_home: &Path,
        key: &str,
    ) -> Result<String, Error> {
        let dir = self.work.path();
        // git runs gpg itself: a wrapper points it at the test's keyring.
        let wrapper = gnupg_home.join("gpg-for-git.sh");
        std::fs::write(
            &wrapper,
            format!("#!/bin/sh\nGNUPGHOME='{}' exec gpg --batch --pinentry-mode loopback --passphrase '' \"$@\"\n", gnupg_home.display()),
        )
        .map_err(|e| Error::Io(wrapper.clone(), e))?;
        let mode = Command::new("chmod").arg("+x").arg(&wrapper).status();
        if !mode.is_ok_and(|s| s.success()) {
            return Err(Error::Command(
                "chmod +x".into(),
                wrapper.display().to_string(),
            ));
        }
        git(dir, &["config", "gpg.format", "openpgp"])?;
        git(dir, &["config", "gpg.program", &wrapper.to_string_lossy()])?;
        git(dir, &["config", "user.signingkey", key])?;
        git(dir, &["config", "commit.gpgsign", "true"])?;
        let id = self.commit(files, message);
        git(dir, &["config", "commit.gpgsign", "false"])?;
        id
    }

    /// Tags the last commit and pushes the tag.
    pub fn tag(&self, name: &str) -> Result<(), Error> {
        let dir = self.work.path();
        git(dir, &["tag", "-f", name])?;
        git(
            dir,
            &[
                "push",
                "-q",
                "--force",
                "origin",
                &format!("refs/tags/{name}"),
            ],
        )?;
        Ok(())
    }

    /// Rewrites history: `main` becomes a single new root commit.
    pub fn force_push_new_history(
        &self,
        files: &[(&str, Option<&str>)],
        message: &str,
    ) -> Result<String, Error> {
        let dir = self.work.path();
        git(dir, &["checkout", "-q", "--orphan", "rewritten"])?;
        git(dir, &["rm", "-rq", "--cached", "--ignore-unmatch", "."])?;
        let id = self.commit(files, message)?;
        git(dir, &["branch", "-q", "-M", "main"])?;
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_instant_vector() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1.5,"0.25"]}]}}"#;
        let v = parse_samples(body).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].value, 0.25);
        assert_eq!(v[0].labels["a"], "b");
    }

    #[test]
    fn an_empty_result_is_not_an_error() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert!(parse_samples(body).unwrap().is_empty());
    }

    #[test]
    fn reports_a_query_error() {
        let body = r#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert!(
            matches!(parse_samples(body), Err(BadAnswer::Failed(m)) if m == "parse error at char 3")
        );
    }

    #[test]
    fn unique_names_do_not_repeat() {
        assert_ne!(unique_name("x"), unique_name("x"));
    }
}
