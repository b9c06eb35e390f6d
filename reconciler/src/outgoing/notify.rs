//! Notifications: what `meshplan run` tells people and forges, beside the
//! status ConfigMap and the Kubernetes Events — rollout transitions and
//! reconcile failures (and recoveries) in Slack, Microsoft Teams, Discord
//! or a JSON sink of one's own, and commit statuses on GitHub or GitLab for
//! the revision being reconciled and each rollout it carries.
//!
//! The sinks are the operator's, in a file of their own (`meshplan run
//! --notifications FILE`), never in the repository: a chat webhook's URL is
//! its secret (`urlFile`, re-read when it changes), and a commit status
//! needs a token, which the credentials file binds to the forge's API URL
//! (`bearerTokenFile`; [`super::credentials`]).
//!
//! ```yaml
//! sinks:
//!   - name: team-chat
//!     type: slack                 # slack, teams, discord, generic, github, gitlab
//!     urlFile: /var/run/secrets/meshplan/slack-url
//!     on: [rollout, reconcile]    # the default: both
//!   - name: ops
//!     type: generic
//!     url: https://ops.example.com/meshplan
//!     template: '{"summary": "{{subject}}: {{message}}", "level": "{{state}}"}'
//!   - name: commits
//!     type: github                # the token: the credentials file's
//!     url: https://api.github.com #   endpoint for this URL
//!     repository: acme/mesh-intents
//!     context: meshplan           # default
//! repeatInterval: 1h   # an identical notice to a sink is sent once within it
//! perMinute: 20        # at most, per sink; more are dropped and counted
//! ```
//!
//! # Guarantees
//!
//! - A notice never blocks reconciling: the controller's worker sends it
//!   (`controller/notices.rs`, in order), each request tried up to three
//!   times (on a transport error, 408, 429 or 5xx) and then given up, with
//!   a warning that names the sink and, for a chat, only its webhook's host
//!   (the URL is the secret).
//! - Deduplicated once delivered: the same text about the same subject to
//!   the same sink is sent once per `repeatInterval` (a commit status: the
//!   same state on the same commit). Rate-limited: at most `perMinute`
//!   notices a minute per chat sink; the next one sent says how many were
//!   dropped. Commit statuses are never dropped.
//! - Commit statuses only for revisions that are Git commits (40 hex
//!   digits; a folder's revision when the folder is a checkout): `pending` while a rollout progresses, `success` when the
//!   revision is applied or the rollout promoted, `failure` when it does
//!   not check, compile or apply, or the rollout fails. Descriptions are
//!   cut to GitHub's 140 characters.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{json, Value};

use super::{shown_url, Http, Invalid, SecretFile, Undelivered};
use crate::rollout::webhook::ATTEMPTS;
use crate::Error;

/// The notifications file.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub sinks: Vec<SinkConfig>,
    /// `1h`, `10m`: an identical notice is sent once within it.
    #[serde(default)]
    pub repeat_interval: Option<String>,
    #[serde(default)]
    pub per_minute: Option<u32>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SinkConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: Kind,
    #[serde(default)]
    pub url: Option<String>,
    /// The URL in a file (a chat webhook's URL is its secret).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub on: Vec<Topic>,
    /// `generic`: the body, a JSON text with `{{kind}}`, `{{subject}}`,
    /// `{{state}}`, `{{message}}` and `{{revision}}` (JSON-escaped).
    #[serde(default)]
    pub template: Option<String>,
    /// `github`: `owner/repo`; `gitlab`: the project's id or path.
    #[serde(default)]
    pub repository: Option<String>,
    /// The commit status's context (GitHub) or name (GitLab).
    #[serde(default)]
    pub context: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Slack,
    Teams,
    Discord,
    Generic,
    Github,
    Gitlab,
}

/// What a notice is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Topic {
    Rollout,
    Reconcile,
}

/// How things stand, as a commit status says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Pending,
    Success,
    Failure,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Success => "success",
            State::Failure => "failure",
        }
    }
}

/// One thing to tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub topic: Topic,
    /// `shop/cart` for a rollout, `repository` for reconciling.
    pub subject: String,
    pub state: State,
    pub message: String,
    /// The revision reconciled (a Git commit, or a folder's stamp).
    pub revision: Option<String>,
}

#[derive(Debug)]
struct Sink {
    config: SinkConfig,
    url: Option<String>,
    url_file: Option<SecretFile>,
}

/// Sends notices to the sinks of a notifications file.
#[derive(Debug)]
pub struct Notifier {
    sinks: Vec<Sink>,
    repeat: Duration,
    per_minute: u32,
    http: Arc<Http>,
    memory: Mutex<Memory>,
}

#[derive(Debug, Default)]
struct Memory {
    /// (sink, topic, subject) → the last text sent, and when.
    sent: BTreeMap<(usize, Topic, String), (String, Instant)>,
    /// Per sink: when its last notices went, and how many were dropped
    /// since the last one sent.
    recent: BTreeMap<usize, (VecDeque<Instant>, u32)>,
}

fn invalid(path: &Path, message: impl Into<String>) -> Error {
    Error::Credentials {
        path: path.display().to_string(),
        message: message.into(),
    }
}

impl Notifier {
    /// Loads the notifications file at `path`, sending through `http`.
    pub fn load(path: &Path, http: Arc<Http>) -> Result<Notifier, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| invalid(path, e.to_string()))?;
        let file: File = serde_saphyr::from_str(&text).map_err(|e| invalid(path, e.to_string()))?;
        Notifier::new(file, http).map_err(|e| invalid(path, e.to_string()))
    }

    /// Notifications per `file`; what is wrong in it, and where.
    pub fn new(file: File, http: Arc<Http>) -> Result<Notifier, Invalid> {
        let repeat = match &file.repeat_interval {
            Some(d) => meshplan_policy_lang::intent::Duration::parse(d)
                .map(|d| Duration::from_millis(d.as_millis()))
                .map_err(|e| super::invalid("repeatInterval", e.to_string()))?,
            None => Duration::from_secs(3600),
        };
        let mut sinks = Vec::new();
        for c in file.sinks {
            let sink = format!("sink `{}`", c.name);
            let bad = |problem: String| super::invalid(sink.clone(), problem);
            let url_file = c.url_file.as_deref().map(SecretFile::new);
            let url = match (&c.url, &url_file, c.kind) {
                (Some(_), Some(_), _) => return Err(bad("`url` or `urlFile`, not both".into())),
                (Some(u), None, _) => Some(u.clone()),
                (None, Some(f), _) => {
                    // Read now: a wrong path is an error at start.
                    f.read().map_err(|e| bad(crate::error_chain(&e)))?;
                    None
                }
                (None, None, Kind::Github) => Some("https://api.github.com".into()),
                (None, None, Kind::Gitlab) => Some("https://gitlab.com".into()),
                (None, None, _) => return Err(bad("give its `url` or `urlFile`".into())),
            };
            if matches!(c.kind, Kind::Github | Kind::Gitlab) && c.repository.is_none() {
                return Err(bad("a commit status needs `repository`".into()));
            }
            if c.kind == Kind::Generic {
                let t = c.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
                let probe = fill(t, &Notice::probe());
                serde_json::from_str::<Value>(&probe)
                    .map_err(|e| bad(format!("the template does not make JSON: {e}")))?;
            }
            sinks.push(Sink {
                config: c,
                url,
                url_file,
            });
        }
        Ok(Notifier {
            sinks,
            repeat,
            per_minute: file.per_minute.unwrap_or(20).max(1),
            http,
            memory: Mutex::default(),
        })
    }

    /// Whether any sink hears about `topic`.
    pub fn wants(&self, topic: Topic) -> bool {
        self.sinks.iter().any(|s| s.hears(topic))
    }

    /// Sends `notice` to every sink that hears about it (blocking: call it
    /// off the runtime). Returns the warnings of what could not be sent.
    pub fn send(&self, notice: &Notice) -> Vec<String> {
        let mut warnings = Vec::new();
        for (i, sink) in self.sinks.iter().enumerate() {
            if !sink.hears(notice.topic) || !sink.concerns(notice) {
                continue;
            }
            let Some(dropped) = self.admit(i, sink, notice) else {
                continue;
            };
            let mut n = notice.clone();
            if dropped > 0 {
                n.message = format!(
                    "{} ({dropped} earlier notices dropped by the rate limit)",
                    n.message
                );
            }
            let sent = match sink.request(&n) {
                Ok((url, body)) => self.post(sink, &url, &body),
                Err(why) => Err(why),
            };
            match sent {
                // Remembered once delivered: a notice that did not arrive
                // is tried again the next time, not taken for a repeat.
                Ok(()) => self.delivered(i, sink, notice),
                Err(why) => {
                    warnings.push(format!("notification sink `{}`: {why}", sink.config.name))
                }
            }
        }
        warnings
    }

    /// What makes two notices to `sink` the same: a commit status is its
    /// state on its commit (GitLab refuses `running` twice in a row; a new
    /// description alone is no news), a message its whole text.
    fn dedup_text(sink: &Sink, n: &Notice) -> String {
        match sink.config.kind {
            Kind::Github | Kind::Gitlab => format!("{:?} {:?}", n.state, n.revision),
            _ => format!("{:?} {} {:?}", n.state, n.message, n.revision),
        }
    }

    /// Whether to send `notice` to sink `i` now (with the count of notices
    /// dropped before it), or not (a repeat, or over the rate). Commit
    /// statuses are not rate-limited: a dropped one would leave a commit
    /// `pending` for good.
    fn admit(&self, i: usize, sink: &Sink, notice: &Notice) -> Option<u32> {
        let now = Instant::now();
        let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let key = (i, notice.topic, notice.subject.clone());
        let text = Self::dedup_text(sink, notice);
        if let Some((last, at)) = m.sent.get(&key) {
            if *last == text && now.duration_since(*at) < self.repeat {
                return None;
            }
        }
        if matches!(sink.config.kind, Kind::Github | Kind::Gitlab) {
            return Some(0);
        }
        let (times, dropped) = m.recent.entry(i).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(60))
        {
            times.pop_front();
        }
        if times.len() >= self.per_minute as usize {
            *dropped += 1;
            return None;
        }
        times.push_back(now);
        Some(std::mem::take(dropped))
    }

    /// Remembers that `notice` reached sink `i`.
    fn delivered(&self, i: usize, sink: &Sink, notice: &Notice) {
        let mut m = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        let key = (i, notice.topic, notice.subject.clone());
        m.sent
            .insert(key, (Self::dedup_text(sink, notice), Instant::now()));
    }

    fn post(&self, sink: &Sink, url: &str, body: &Value) -> Result<(), Undelivered> {
        let text = body.to_string();
        let shown = sink.shown(url);
        let mut pause = Duration::from_millis(500);
        for attempt in 1..=ATTEMPTS {
            let req = self
                .http
                .post(url)
                .map_err(|_| Undelivered::NotSent {
                    to: shown.clone(),
                    reason: "not an http:// or https:// URL".into(),
                })?
                .config()
                .timeout_global(Some(Duration::from_secs(10)))
                .http_status_as_error(false)
                .build()
                .header("content-type", "application/json")
                .header("user-agent", "meshplan");
            let req = match sink.config.kind {
                Kind::Github => req
                    .header("accept", "application/vnd.github+json")
                    .header("x-github-api-version", "2022-11-28"),
                _ => req,
            };
            let again = match req.send(&text) {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => {
                    let s = r.status().as_u16();
                    let e = Undelivered::Answered {
                        to: shown.clone(),
                        status: s,
                        attempts: attempt,
                    };
                    if !e.transient() || attempt == ATTEMPTS {
                        return Err(e);
                    }
                    true
                }
                Err(e) if attempt == ATTEMPTS => {
                    return Err(Undelivered::NoAnswer {
                        to: shown,
                        reason: e.to_string(),
                        attempts: attempt,
                    })
                }
                Err(_) => true,
            };
            if again {
                std::thread::sleep(pause);
                pause *= 2;
            }
        }
        Ok(())
    }
}

impl Sink {
    fn hears(&self, topic: Topic) -> bool {
        self.config.on.is_empty() || self.config.on.contains(&topic)
    }

    /// Whether this sink has something to say about `n`: a commit status
    /// needs a revision that is a commit.
    fn concerns(&self, n: &Notice) -> bool {
        match self.config.kind {
            Kind::Github | Kind::Gitlab => n.revision.as_deref().and_then(commit_of).is_some(),
            _ => true,
        }
    }

    fn base(&self) -> Result<String, Undelivered> {
        match (&self.url, &self.url_file) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(f)) => f
                .read()
                .map_err(|e| Undelivered::Unsendable(crate::error_chain(&e))),
            (None, None) => Err(Undelivered::Unsendable("no URL".into())),
        }
    }

    /// `url` as a log line may show it: a chat webhook's URL is its secret
    /// (Slack's and Discord's in the path), so only its host.
    fn shown(&self, url: &str) -> String {
        match self.config.kind {
            Kind::Github | Kind::Gitlab => shown_url(url),
            _ => {
                let host = url
                    .split_once("://")
                    .map_or("", |(_, rest)| rest)
                    .split(['/', '?', '#'])
                    .next()
                    .unwrap_or_default();
                let host = host.rsplit('@').next().unwrap_or_default();
                format!("the webhook at {host}")
            }
        }
    }

    /// Where to post `n`, and what.
    fn request(&self, n: &Notice) -> Result<(String, Value), Undelivered> {
        let base = self.base()?;
        let c = &self.config;
        let not_sent = |reason: &str| Undelivered::Unsendable(reason.to_owned());
        let body = match c.kind {
            Kind::Slack => slack(n),
            Kind::Teams => teams(n),
            Kind::Discord => discord(n),
            Kind::Generic => {
                let t = c.template.as_deref().unwrap_or(DEFAULT_TEMPLATE);
                serde_json::from_str(&fill(t, n))
                    .map_err(|e| not_sent(&format!("the template does not make JSON: {e}")))?
            }
            Kind::Github | Kind::Gitlab => {
                let sha = n
                    .revision
                    .as_deref()
                    .and_then(commit_of)
                    .ok_or_else(|| not_sent("the revision is no commit"))?;
                let repo = c
                    .repository
                    .as_deref()
                    .ok_or_else(|| not_sent("no repository"))?;
                let context = status_context(c.context.as_deref(), n);
                let base = base.trim_end_matches('/');
                return Ok(if c.kind == Kind::Github {
                    (
                        format!("{base}/repos/{repo}/statuses/{sha}"),
                        github_status(n, &context),
                    )
                } else {
                    (
                        format!(
                            "{base}/api/v4/projects/{}/statuses/{sha}",
                            repo.replace('/', "%2F")
                        ),
                        gitlab_status(n, &context),
                    )
                });
            }
        };
        Ok((base, body))
    }
}

impl Notice {
    /// A notice with every field set, to try a template with.
    fn probe() -> Notice {
        Notice {
            topic: Topic::Rollout,
            subject: "ns/name".into(),
            state: State::Pending,
            message: "a \"quoted\" message".into(),
            revision: Some("0".repeat(40)),
        }
    }

    /// One line a person reads.
    pub fn text(&self) -> String {
        let what = match self.topic {
            Topic::Rollout => "rollout",
            Topic::Reconcile => "reconcile",
        };
        let rev = self
            .revision
            .as_deref()
            .map(|r| format!(" (revision {})", &r[..r.len().min(12)]))
            .unwrap_or_default();
        format!("meshplan {what} {}: {}{rev}", self.subject, self.message)
    }
}

const DEFAULT_TEMPLATE: &str = r#"{"kind": "{{kind}}", "subject": "{{subject}}", "state": "{{state}}", "message": "{{message}}", "revision": "{{revision}}"}"#;

/// `template` with its placeholders replaced by the notice's fields,
/// JSON-escaped (so a message cannot break out of its string).
fn fill(template: &str, n: &Notice) -> String {
    let esc = |s: &str| {
        let q = serde_json::to_string(s).unwrap_or_default();
        q[1..q.len().saturating_sub(1)].to_owned()
    };
    let kind = match n.topic {
        Topic::Rollout => "rollout",
        Topic::Reconcile => "reconcile",
    };
    template
        .replace("{{kind}}", kind)
        .replace("{{subject}}", &esc(&n.subject))
        .replace("{{state}}", n.state.name())
        .replace("{{message}}", &esc(&n.message))
        .replace("{{revision}}", &esc(n.revision.as_deref().unwrap_or("")))
}

/// The Git commit of a revision: the revision itself, or the HEAD a
/// folder's revision starts with (`<commit>@<stamp>`).
fn commit_of(r: &str) -> Option<&str> {
    let c = r.split('@').next()?;
    (c.len() == 40 && c.bytes().all(|b| b.is_ascii_hexdigit())).then_some(c)
}

/// `meshplan` for the revision, `meshplan/rollout shop/cart` for a rollout.
fn status_context(context: Option<&str>, n: &Notice) -> String {
    let c = context.unwrap_or("meshplan");
    match n.topic {
        Topic::Reconcile => c.to_owned(),
        Topic::Rollout => format!("{c}/rollout {}", n.subject),
    }
}

/// Slack's incoming webhooks: `text` (mrkdwn), shown in the notification;
/// `&`, `<` and `>` escaped as Slack asks, so a message cannot make a link
/// or a mention (`<!here>`).
fn slack(n: &Notice) -> Value {
    let text = n
        .text()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    json!({ "text": text })
}

/// Microsoft Teams (a Workflows webhook): a message with one Adaptive Card.
fn teams(n: &Notice) -> Value {
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": [{ "type": "TextBlock", "text": n.text(), "wrap": true }]
            }
        }]
    })
}

/// Discord's webhooks: `content`, at most 2,000 characters.
fn discord(n: &Notice) -> Value {
    let text: String = n.text().chars().take(2000).collect();
    // No mention a message carries (`@everyone`) pings anyone.
    json!({ "content": text, "username": "meshplan", "allowed_mentions": { "parse": [] } })
}

/// GitHub's "create a commit status": `state` (pending, success, failure,
/// error), `description` (at most 140 characters), `context`.
fn github_status(n: &Notice, context: &str) -> Value {
    let description: String = n.message.chars().take(140).collect();
    json!({ "state": n.state.name(), "description": description, "context": context })
}

/// GitLab's "set the pipeline status of a commit": `state` (pending,
/// running, success, failed, canceled), `name`, `description`.
fn gitlab_status(n: &Notice, context: &str) -> Value {
    let state = match n.state {
        State::Pending => "running",
        State::Success => "success",
        State::Failure => "failed",
    };
    let description: String = n.message.chars().take(255).collect();
    json!({ "state": state, "name": context, "description": description })
}

#[cfg(test)]
mod tests;
