//! Outgoing HTTP: Prometheus queries and webhook calls, over HTTPS
//! (rustls, the TLS stack kube uses too; the public web PKI roots unless a
//! CA bundle is given), with the credentials the operator binds to URL
//! prefixes ([`credentials`]).
//!
//! # Expected flow
//!
//! `meshplan run --http-credentials FILE` loads the file once
//! ([`Http::load`]): one agent per endpoint (its TLS settings), one for
//! everything else. Each request picks the endpoint of the longest prefix
//! of its URL ([`Http::get`], [`Http::post`]) and gets its headers and its
//! `Authorization`, read from the secret's file when the file changed since
//! the last request.
//!
//! # Guarantees
//!
//! - A request gets the credentials of its URL's endpoint, and no other.
//! - An `Authorization` header is never sent on to a redirect's target.
//! - A secret file that cannot be read, or whose content would break the
//!   header (a line break inside), fails the request with an error that
//!   names the file, never its content.

pub mod credentials;
pub mod notify;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use ureq::config::RedirectAuthHeaders;
use ureq::tls::{parse_pem, ClientCert, PemItem, RootCerts, TlsConfig};
use ureq::typestate::{WithBody, WithoutBody};
use ureq::{Agent, RequestBuilder};

use crate::Error;
use credentials::{Endpoint, File, Origin};

/// Why a request was not sent.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("`{0}` is not an http:// or https:// URL")]
    Url(String),
    #[error("cannot read the secret file {path}")]
    SecretFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the secret file {0} is empty, or holds a line break or control character inside")]
    SecretValue(String),
}

/// Why a POST (a webhook, a notification) got no 2xx answer; never with
/// a secret: `to` names the receiver with its URL shown without user info
/// and query.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undelivered {
    /// Not sent: its URL, or a secret it needs, is unusable.
    #[error("{to}: {reason}")]
    NotSent { to: String, reason: String },
    /// Not sent: the receiver's settings cannot make this request (no
    /// URL, no repository for a commit status, a template that does not
    /// make JSON); the caller names the receiver.
    #[error("{0}")]
    Unsendable(String),
    /// No answer (connection, timeout, TLS).
    #[error("{to}: {reason}{}", after(*attempts))]
    NoAnswer {
        to: String,
        reason: String,
        attempts: u32,
    },
    #[error("{to} answered {status}{}", after(*attempts))]
    Answered {
        to: String,
        status: u16,
        attempts: u32,
    },
}

/// ` (after N attempts)` when it took more than one.
fn after(attempts: u32) -> String {
    match attempts {
        0 | 1 => String::new(),
        n => format!(" (after {n} attempts)"),
    }
}

impl Undelivered {
    /// The same failure, after `attempts` tries.
    pub(crate) fn after(mut self, n: u32) -> Undelivered {
        match &mut self {
            Undelivered::NotSent { .. } | Undelivered::Unsendable(_) => {}
            Undelivered::NoAnswer { attempts, .. } | Undelivered::Answered { attempts, .. } => {
                *attempts = n
            }
        }
        self
    }

    /// Whether trying again may help: no answer, a timeout, throttling or
    /// a server error.
    pub(crate) fn transient(&self) -> bool {
        match self {
            Undelivered::NotSent { .. } | Undelivered::Unsendable(_) => false,
            Undelivered::NoAnswer { .. } => true,
            Undelivered::Answered { status, .. } => matches!(status, 408 | 429 | 500..=599),
        }
    }
}

/// A setting of an operator's file that is wrong: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    /// `endpoints[0].url`, `sink \`chat\``.
    pub field: String,
    pub problem: String,
}

pub(crate) fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

/// The HTTP client of outgoing requests.
#[derive(Debug)]
pub struct Http {
    endpoints: Vec<Bound>,
    plain: Agent,
}

/// An endpoint, ready to send with.
#[derive(Debug)]
struct Bound {
    origin: Origin,
    agent: Agent,
    auth: Auth,
    headers: Vec<(String, String)>,
    signing: Option<SecretFile>,
}

/// The header of a signed body's time, in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-meshplan-timestamp";

/// The header of a signed body's signature: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-meshplan-signature";

/// The signature of `body` sent at `timestamp` with `key`: the lower-case
/// hex HMAC-SHA256 of `<timestamp>.<body>`. The time is signed with the
/// body so that a receiver can refuse a replayed request (one older than a
/// few minutes).
pub fn sign(key: &[u8], timestamp: u64, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    use std::fmt::Write as _;
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .fold(String::with_capacity(64), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

#[derive(Debug)]
enum Auth {
    None,
    Bearer(SecretFile),
    Basic {
        username: String,
        password: SecretFile,
    },
}

/// A secret kept in a file, re-read when the file changes.
pub(crate) struct SecretFile {
    path: PathBuf,
    cache: Mutex<Option<(Stamp, String)>>,
}

/// What tells a file changed: a rotated Secret volume swaps a link, a
/// rewritten file changes its time or length.
type Stamp = (Option<SystemTime>, u64, u64);

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SecretFile {
    pub(crate) fn new(path: &Path) -> SecretFile {
        SecretFile {
            path: path.to_owned(),
            cache: Mutex::new(None),
        }
    }

    pub(crate) fn read(&self) -> Result<String, Refused> {
        use std::os::unix::fs::MetadataExt;
        let shown = || self.path.display().to_string();
        let io = |source| Refused::SecretFile {
            path: shown(),
            source,
        };
        let meta = std::fs::metadata(&self.path).map_err(io)?;
        let stamp = (meta.modified().ok(), meta.len(), meta.ino());
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, value)) = cache.as_ref() {
            if *at == stamp {
                return Ok(value.clone());
            }
        }
        let text = std::fs::read_to_string(&self.path).map_err(io)?;
        // Files written by hand end with a newline; nothing else is trimmed.
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(Refused::SecretValue(shown()));
        }
        *cache = Some((stamp, value.to_owned()));
        Ok(value.to_owned())
    }
}

impl Default for Http {
    fn default() -> Self {
        Http {
            endpoints: Vec::new(),
            plain: agent(TlsConfig::default()),
        }
    }
}

fn agent(tls: TlsConfig) -> Agent {
    Agent::config_builder()
        .tls_config(tls)
        .redirect_auth_headers(RedirectAuthHeaders::Never)
        .build()
        .new_agent()
}

impl Http {
    /// Loads the credentials file at `path` (see [`credentials`]).
    pub fn load(path: &Path) -> Result<Http, Error> {
        Http::new(File::load(path)?)
    }

    /// A client for the endpoints of `file`: their certificates and keys
    /// are read now.
    pub fn new(file: File) -> Result<Http, Error> {
        let mut endpoints = Vec::with_capacity(file.endpoints.len());
        for e in file.endpoints {
            endpoints.push(bind(e)?);
        }
        // Longest prefix first: the first that covers a URL is its own.
        endpoints.sort_by_key(|b| std::cmp::Reverse(b.origin.path.len()));
        Ok(Http {
            endpoints,
            ..Http::default()
        })
    }

    fn endpoint(&self, url: &str) -> Result<Option<&Bound>, Refused> {
        let origin = Origin::parse(url).ok_or_else(|| Refused::Url(shown_url(url)))?;
        Ok(self.endpoints.iter().find(|b| b.origin.covers(&origin)))
    }

    /// A GET of `url`, with its endpoint's credentials.
    pub fn get(&self, url: &str) -> Result<RequestBuilder<WithoutBody>, Refused> {
        match self.endpoint(url)? {
            Some(b) => b.dress(b.agent.get(url)),
            None => Ok(self.plain.get(url)),
        }
    }

    /// A POST to `url`, with its endpoint's credentials.
    pub fn post(&self, url: &str) -> Result<RequestBuilder<WithBody>, Refused> {
        match self.endpoint(url)? {
            Some(b) => b.dress(b.agent.post(url)),
            None => Ok(self.plain.post(url)),
        }
    }

    /// A POST of `body` to `url`, with its endpoint's credentials, and
    /// signed at `timestamp` when the endpoint has a signing key.
    pub fn post_signed(
        &self,
        url: &str,
        body: &[u8],
        timestamp: u64,
    ) -> Result<RequestBuilder<WithBody>, Refused> {
        let Some(b) = self.endpoint(url)? else {
            return Ok(self.plain.post(url));
        };
        let req = b.dress(b.agent.post(url))?;
        let Some(key) = &b.signing else {
            return Ok(req);
        };
        let signature = sign(key.read()?.as_bytes(), timestamp, body);
        Ok(req
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, format!("sha256={signature}")))
    }
}

impl Bound {
    fn dress<B>(&self, mut req: RequestBuilder<B>) -> Result<RequestBuilder<B>, Refused> {
        for (name, value) in &self.headers {
            req = req.header(name, value);
        }
        let authorization = match &self.auth {
            Auth::None => return Ok(req),
            Auth::Bearer(token) => format!("Bearer {}", token.read()?),
            Auth::Basic { username, password } => {
                let pair = format!("{username}:{}", password.read()?);
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(pair)
                )
            }
        };
        Ok(req.header("authorization", authorization))
    }
}

fn bind(e: Endpoint) -> Result<Bound, Error> {
    let origin = Origin::parse(&e.url).ok_or_else(|| Error::Credentials {
        path: e.url.clone(),
        message: "not an http:// or https:// URL".into(),
    })?;
    let mut tls = TlsConfig::builder();
    if let Some(t) = &e.tls {
        if let Some(ca) = &t.ca_file {
            let certs = certificates(ca)?;
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let (Some(cert), Some(key)) = (&t.cert_file, &t.key_file) {
            let chain = certificates(cert)?;
            let key = private_key(key)?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key)));
        }
    }
    let auth = match (&e.bearer_token_file, &e.basic_auth) {
        (Some(token), _) => Auth::Bearer(SecretFile::new(token)),
        (None, Some(b)) => Auth::Basic {
            username: b.username.clone(),
            password: SecretFile::new(&b.password_file),
        },
        (None, None) => Auth::None,
    };
    let signing = e.signing_key_file.as_deref().map(SecretFile::new);
    // The secrets are read once now, so that a wrong path is an error at
    // start rather than at the first analysis.
    let secrets = match &auth {
        Auth::Bearer(s) | Auth::Basic { password: s, .. } => Some(s),
        Auth::None => None,
    };
    for s in secrets.into_iter().chain(&signing) {
        s.read().map_err(|r| Error::Credentials {
            path: e.url.clone(),
            message: r.to_string(),
        })?;
    }
    Ok(Bound {
        origin,
        agent: agent(tls.build()),
        auth,
        headers: e.headers.into_iter().collect(),
        signing,
    })
}

fn read_pem(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, Error> {
    let pem = read_pem(path)?;
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(Error::Credentials {
            path: path.display().to_string(),
            message: "no PEM certificate in it".into(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<ureq::tls::PrivateKey<'static>, Error> {
    let pem = read_pem(path)?;
    let key = parse_pem(&pem).find_map(|item| match item {
        Ok(PemItem::PrivateKey(k)) => Some(k),
        _ => None,
    });
    key.ok_or_else(|| Error::Credentials {
        path: path.display().to_string(),
        message: "no PEM private key in it".into(),
    })
}

/// A URL without user info or query string (they may carry tokens).
pub fn shown_url(url: &str) -> String {
    let no_query = url.split(['?', '#']).next().unwrap_or(url);
    match no_query.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
            format!("{scheme}://{host}{path}")
        }
        None => no_query.to_owned(),
    }
}

#[cfg(test)]
mod tests;
