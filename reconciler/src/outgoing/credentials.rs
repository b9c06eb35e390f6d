//! The credentials file: which TLS settings, authentication and headers go
//! with which URLs.
//!
//! URLs come from Git (`metrics.url` in meshplan.yaml, `rollout.webhooks`
//! in intents) and Git is untrusted: a commit that points a URL at another
//! host must not take a token with it. So credentials are never written in
//! the repository. The operator writes them in a file of their own, each
//! bound to a URL prefix, and meshplan attaches them only to requests under
//! that prefix (as Git's `credential.<url>.*` settings and Docker's
//! per-registry auths do).
//!
//! ```yaml
//! endpoints:
//!   - url: https://mimir.example.com/prometheus
//!     bearerTokenFile: /var/run/secrets/mimir/token   # re-read when it changes
//!     headers: { X-Scope-OrgID: team-a }
//!     tls:
//!       caFile: /etc/meshplan/tls/ca.crt
//!       certFile: /etc/meshplan/tls/client.crt
//!       keyFile: /etc/meshplan/tls/client.key
//!   - url: https://hooks.example.com
//!     basicAuth: { username: meshplan, passwordFile: /etc/meshplan/hooks-password }
//!     signingKeyFile: /etc/meshplan/hooks-signing-key      # signs webhook bodies
//! ```
//!
//! # Guarantees
//!
//! - A prefix matches a URL of the same scheme, host (case-insensitive)
//!   and port (the scheme's default when not written), whose path starts
//!   with the prefix's path at a `/` boundary: `https://h/prometheus`
//!   matches `https://h/prometheus/api/v1/query`, not
//!   `https://h/prometheus-evil/…` nor `https://h.evil/…`. The longest
//!   matching prefix wins; a URL no prefix matches gets none of them.
//! - Secret values (tokens, passwords, keys) are read from files, never
//!   held in this file, never shown by `Debug` or in an error.
//! - Every mistake (an unknown field, a missing file, a header name that
//!   is not an HTTP token, a token and basic auth on one endpoint) is an
//!   error when the file is loaded, before anything is sent.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{invalid, Invalid};
use crate::Error;

/// The file, as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct File {
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
}

/// What goes with the URLs under one prefix.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub url: String,
    /// `Authorization: Bearer <the file's content>`, re-read when the file
    /// changes (projected ServiceAccount tokens rotate).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// Extra request headers (a tenant ID, an API key header).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A key that signs every webhook body: HMAC-SHA256 over
    /// `<timestamp>.<body>` in `X-Meshplan-Signature` (see
    /// [`super::sign`]). Re-read when it changes.
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub tls: Option<Tls>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    /// Re-read when it changes.
    pub password_file: PathBuf,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tls {
    /// PEM certificates to trust instead of the public roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// A PEM client certificate (chain), with `keyFile`.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The scheme, host and port a URL is sent to, and its path: what a
/// prefix is compared on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Origin {
    /// Reads `url`'s origin; `None` when it is not an absolute `http(s)`
    /// URL.
    pub fn parse(url: &str) -> Option<Origin> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        // User info never decides where a request goes.
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = match host_port.rsplit_once(':') {
            // An IPv6 literal's colons are inside its brackets.
            Some((h, p)) if !p.contains(']') => (h, p.parse().ok()?),
            _ => (host_port, default_port),
        };
        if host.is_empty() {
            return None;
        }
        let path = tail.split(['?', '#']).next().unwrap_or("");
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_owned(),
        })
    }

    /// Whether a request to `url` is under this prefix (see the module's
    /// guarantees).
    pub fn covers(&self, url: &Origin) -> bool {
        if (&self.scheme, &self.host, self.port) != (&url.scheme, &url.host, url.port) {
            return false;
        }
        let prefix = self.path.trim_end_matches('/');
        match url.path.strip_prefix(prefix) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }
}

/// An HTTP header name: an RFC 9110 token.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl File {
    /// Reads and checks the file at `path`.
    pub fn load(path: &std::path::Path) -> Result<File, Error> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: shown.clone(),
            source,
        })?;
        let file: File = serde_saphyr::from_str(&text).map_err(|e| Error::Credentials {
            path: shown.clone(),
            message: e.to_string(),
        })?;
        file.check().map_err(|e| Error::Credentials {
            path: shown,
            message: e.to_string(),
        })?;
        Ok(file)
    }

    fn check(&self) -> Result<(), Invalid> {
        let mut seen = std::collections::BTreeSet::new();
        for (i, e) in self.endpoints.iter().enumerate() {
            let at = format!("endpoints[{i}]");
            let origin = Origin::parse(&e.url)
                .ok_or_else(|| invalid(format!("{at}.url"), "not an http:// or https:// URL"))?;
            if e.url.contains('@') || e.url.contains(['?', '#']) {
                return Err(invalid(
                    format!("{at}.url"),
                    "a prefix has no user info, query or fragment",
                ));
            }
            if !seen.insert((origin.scheme, origin.host, origin.port, origin.path)) {
                return Err(invalid(
                    format!("{at}.url"),
                    format!("`{}` is listed twice", e.url),
                ));
            }
            if e.bearer_token_file.is_some() && e.basic_auth.is_some() {
                return Err(invalid(
                    at.clone(),
                    "`bearerTokenFile` and `basicAuth` both set the Authorization header: keep one",
                ));
            }
            for (name, value) in &e.headers {
                if !is_token(name) {
                    return Err(invalid(
                        format!("{at}.headers"),
                        format!("`{name}` is not an HTTP header name"),
                    ));
                }
                if name.eq_ignore_ascii_case("authorization") {
                    return Err(invalid(format!("{at}.headers"), "set Authorization with `bearerTokenFile` or `basicAuth`, whose secrets stay in files"));
                }
                if value.chars().any(|c| c.is_control() && c != '\t') {
                    return Err(invalid(
                        format!("{at}.headers.{name}"),
                        "control characters",
                    ));
                }
            }
            if let Some(b) = &e.basic_auth {
                if b.username.contains(':') || b.username.chars().any(char::is_control) {
                    return Err(invalid(
                        format!("{at}.basicAuth.username"),
                        "no `:` or control characters",
                    ));
                }
            }
            if let Some(t) = &e.tls {
                if t.cert_file.is_some() != t.key_file.is_some() {
                    return Err(invalid(
                        format!("{at}.tls"),
                        "a client certificate needs both `certFile` and `keyFile`",
                    ));
                }
            }
        }
        Ok(())
    }
}
