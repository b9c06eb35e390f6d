//! `meshplan run` (the long-running reconciler) and `meshplan status`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use meshplan_compiler::Options;
use meshplan_policy_lang::intent::config::UnsupportedSetting;
use meshplan_reconciler::controller::lease::LeaseConfig;
use meshplan_reconciler::controller::status::{self, hostname};
use meshplan_reconciler::controller::{self, Config, Log, SelfHeal, Source};
use meshplan_reconciler::source::git::{AllowedSigners, GitAuth, GitRef, GitSource, Secret};
use meshplan_reconciler::Cluster;

use super::cluster::{connect_options, runtime};
use super::output::print;
use super::{ListFormat, LogLevel, RunArgs, StatusArgs, Unsupported};

/// Log lines on stderr: `2026-11-22T01:40:00Z INFO message`; DEBUG lines
/// only with `--log-level debug`.
struct Stderr {
    debug: bool,
}

impl Log for Stderr {
    fn info(&self, message: &str) {
        eprintln!("{} INFO {message}", now());
    }
    fn warn(&self, message: &str) {
        eprintln!("{} WARN {message}", now());
    }
    fn debug(&self, message: &str) {
        if self.debug {
            eprintln!("{} DEBUG {message}", now());
        }
    }
}

fn now() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    // Milliseconds: rollouts and drift act within a second.
    t.round(k8s_openapi::jiff::Unit::Millisecond)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| t.to_string())
}

fn secret_from(file: Option<&std::path::Path>, env: &str) -> anyhow::Result<Option<Secret>> {
    if let Some(f) = file {
        return Ok(Some(Secret::from_file(f)?));
    }
    Ok(std::env::var(env)
        .ok()
        .filter(|v| !v.is_empty())
        .map(Secret::new))
}

fn source(args: &RunArgs) -> anyhow::Result<Source> {
    let Some(url) = &args.git else {
        let dir = &args.compile.repo;
        if !dir.is_dir() {
            anyhow::bail!("{} is not a folder (give one, or --git URL)", dir.display());
        }
        return Ok(Source::Dir(dir.clone()));
    };
    let reference = match (&args.branch, &args.tag, &args.commit) {
        (Some(b), _, _) => GitRef::Branch(b.clone()),
        (_, Some(t), _) => GitRef::Tag(t.clone()),
        (_, _, Some(c)) => GitRef::Commit(c.clone()),
        _ => GitRef::DefaultBranch,
    };
    let is_ssh = url.starts_with("ssh://") || (!url.contains("://") && url.contains('@'));
    let auth = if let Some(key) = &args.git_ssh_key {
        let known_hosts = match &args.git_known_hosts {
            Some(k) => k.clone(),
            None => std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".ssh/known_hosts"))
                .filter(|p| p.is_file())
                .context("ssh needs --git-known-hosts (no ~/.ssh/known_hosts): host keys are always verified")?,
        };
        GitAuth::SshKey {
            private_key: key.clone(),
            known_hosts,
        }
    } else if is_ssh {
        anyhow::bail!(
            "{}: ssh needs --git-ssh-key",
            meshplan_reconciler::source::git::redact_url(url)
        );
    } else if let Some(user) = &args.git_username {
        let password = secret_from(args.git_password_file.as_deref(), "MESHPLAN_GIT_PASSWORD")?
            .context("--git-username needs --git-password-file or $MESHPLAN_GIT_PASSWORD")?;
        GitAuth::Basic {
            username: user.clone(),
            password,
        }
    } else if let Some(token) = secret_from(args.git_token_file.as_deref(), "MESHPLAN_GIT_TOKEN")? {
        GitAuth::Token(token)
    } else {
        GitAuth::None
    };
    let checkout = match &args.checkout {
        Some(c) => c.clone(),
        None => {
            use std::hash::{DefaultHasher, Hash, Hasher};
            let mut h = DefaultHasher::new();
            (url, &args.branch, &args.tag, &args.commit).hash(&mut h);
            std::env::temp_dir().join(format!("meshplan-checkout-{:016x}", h.finish()))
        }
    };
    Ok(Source::Git(GitSource {
        url: url.clone(),
        reference,
        path: args.path.clone(),
        auth,
        shallow: args.shallow,
        checkout,
        signers: signers(args)?,
    }))
}

/// The keys commits must be signed by, if any were given.
fn signers(args: &RunArgs) -> anyhow::Result<Option<AllowedSigners>> {
    if args.verify_ssh_signers.is_none() && args.verify_gpg_keys.is_none() {
        return Ok(None);
    }
    let mut s = match &args.verify_ssh_signers {
        Some(f) => AllowedSigners::from_file(f)?,
        None => AllowedSigners::default(),
    };
    if let Some(f) = &args.verify_gpg_keys {
        s.add_pgp_file(f)?;
    }
    Ok(Some(s))
}

/// The client of outgoing requests: `--http-credentials`, or the file
/// `$MESHPLAN_HTTP_CREDENTIALS` names, or none.
pub fn http_client(
    file: Option<&std::path::Path>,
) -> anyhow::Result<meshplan_reconciler::outgoing::Http> {
    let path = file
        .map(std::path::Path::to_path_buf)
        .or_else(|| std::env::var_os("MESHPLAN_HTTP_CREDENTIALS").map(std::path::PathBuf::from));
    Ok(match path {
        Some(path) => meshplan_reconciler::outgoing::Http::load(&path)?,
        None => Default::default(),
    })
}

pub fn run(args: &RunArgs) -> anyhow::Result<ExitCode> {
    let http = std::sync::Arc::new(http_client(args.http_credentials.as_deref())?);
    let notifier = args
        .notifications
        .clone()
        .or_else(|| std::env::var_os("MESHPLAN_NOTIFICATIONS").map(std::path::PathBuf::from))
        .map(|p| meshplan_reconciler::outgoing::notify::Notifier::load(&p, http.clone()))
        .transpose()?
        .map(std::sync::Arc::new);
    let config = Config {
        source: source(args)?,
        interval: args.interval,
        compile: Options {
            targets: (!args.compile.mesh.is_empty()).then(|| args.compile.mesh.clone()),
            unsupported: args.compile.unsupported.map(|u| match u {
                Unsupported::Error => UnsupportedSetting::Error,
                Unsupported::Warning => UnsupportedSetting::Warning,
            }),
            ..Options::default()
        },
        strict: args.compile.strict,
        inventory: args.target.inventory.clone(),
        concurrency: args.target.concurrency,
        prune: args.prune,
        self_heal: SelfHeal {
            default: args.self_heal,
            kinds: args.self_heal_kind.iter().cloned().collect(),
        },
        listen: Some(args.listen),
        http,
        notifier,
        webhook_secret: secret_from(
            args.webhook_secret_file.as_deref(),
            "MESHPLAN_WEBHOOK_SECRET",
        )?,
        lease: args.leader_election.then(|| {
            LeaseConfig::new(
                &args.lease.namespace,
                &args.lease.name,
                &args.identity.clone().unwrap_or_else(hostname),
            )
        }),
        timeout: args.timeout,
    };
    // A checkout meshplan placed in the temp dir itself is its own to
    // remove when it stops (one given with --checkout is the caller's).
    let temp_checkout = match (&config.source, &args.checkout) {
        (Source::Git(g), None) => Some(g.checkout.clone()),
        _ => None,
    };
    let rt = runtime()?;
    let result = rt.block_on(async {
        let cluster = Cluster::connect(&connect_options(&args.target)).await?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            eprintln!("{} INFO stopping (signal received)", now());
            let _ = stop_tx.send(true);
        });
        let log: Arc<dyn Log> = Arc::new(Stderr {
            debug: args.log_level == LogLevel::Debug,
        });
        log.info(&format!(
            "meshplan {} following {}",
            env!("CARGO_PKG_VERSION"),
            match &config.source {
                Source::Git(g) => meshplan_reconciler::source::git::redact_url(&g.url),
                Source::Dir(d) => d.display().to_string(),
            }
        ));
        controller::run(cluster, config, log, stop_rx, None).await?;
        Ok(ExitCode::SUCCESS)
    });
    // An analysis still waiting on Prometheus (a blocking call, up to its
    // timeout) is not waited for: the process stops now.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    if let Some(dir) = temp_checkout {
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => eprintln!(
                "{} WARN cannot remove the checkout {}: {e}",
                now(),
                dir.display()
            ),
            _ => {}
        }
    }
    result
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

pub fn status(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    runtime()?.block_on(async {
        let cluster = Cluster::connect(&connect_options(&args.target)).await?;
        let Some(s) = status::read(&cluster, &args.target.inventory).await? else {
            anyhow::bail!(
                "no status for inventory {}: meshplan run has not reconciled with it yet",
                args.target.inventory
            );
        };
        match args.format {
            ListFormat::Json => print(&(serde_json::to_string_pretty(&s)? + "\n"))?,
            ListFormat::Text => {
                let mut out = format!("result:       {}\n", s.result);
                if let Some(r) = &s.revision {
                    out.push_str(&format!("revision:     {r}\n"));
                }
                out.push_str(&format!(
                    "applied:      {}\n",
                    s.last_applied_revision.as_deref().unwrap_or("(none yet)")
                ));
                out.push_str(&format!("objects:      {}\n", s.objects));
                out.push_str(&format!("since:        {}\n", s.since));
                if !s.message.is_empty() {
                    out.push_str(&format!("message:      {}\n", s.message));
                }
                for (title, list) in [
                    ("diagnostics", &s.diagnostics),
                    ("drift (not healed)", &s.drift),
                    ("failures", &s.failures),
                ] {
                    if !list.is_empty() {
                        out.push_str(&format!("{title}:\n"));
                        for l in list {
                            out.push_str(&format!("  {l}\n"));
                        }
                    }
                }
                print(&out)?;
            }
        }
        Ok(if !s.result.ok() {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        })
    })
}
