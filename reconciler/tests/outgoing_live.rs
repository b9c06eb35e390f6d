//! Outgoing HTTPS (issue 28): Prometheus over TLS under a path prefix, with
//! basic auth and a client certificate, and webhooks over TLS with a
//! rotating bearer token and extra headers — against the test
//! environment's real Prometheus and webhook receiver, with the
//! certificates it made. Needs the test environment.

use std::sync::Arc;

use meshplan_policy_lang::intent::rollout::Webhook;
use meshplan_reconciler::outgoing::{Http, Undelivered};
use meshplan_reconciler::rollout::analysis::{MetricSource, Prometheus};
use meshplan_reconciler::rollout::webhook;
use meshplan_testenv::{unique_name, TestEnv};

/// A client with the credentials file `yaml`.
fn http(yaml: &str) -> Result<Http, meshplan_reconciler::Error> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials.yaml");
    std::fs::write(&path, yaml).unwrap();
    Http::load(&path)
}

fn prometheus(yaml: &str) -> Prometheus {
    Prometheus {
        url: TestEnv::get().prometheus_tls.url.clone(),
        http: Arc::new(http(yaml).unwrap_or_else(|e| panic!("{e}"))),
    }
}

/// An endpoint for the TLS Prometheus: `tls` and `auth` as YAML flow
/// entries (empty for none).
fn endpoint(url: &str, tls: &str, auth: &str) -> String {
    format!("endpoints:\n  - {{ url: '{url}', tls: {{ {tls} }} {auth} }}\n")
}

#[test]
fn prometheus_over_tls_with_basic_auth_a_client_certificate_and_a_path_prefix() {
    let env = TestEnv::get();
    let (t, p) = (&env.tls, &env.prometheus_tls);
    let ca = format!("caFile: '{}'", t.ca_file.display());
    let cert = format!(
        "{ca}, certFile: '{}', keyFile: '{}'",
        t.client_cert_file.display(),
        t.client_key_file.display()
    );
    let auth = format!(
        ", basicAuth: {{ username: {}, passwordFile: '{}' }}",
        p.username,
        p.password_file.display()
    );
    let all = prometheus(&endpoint(&p.url, &cert, &auth));
    assert_eq!(all.query("vector(42)"), Ok(Some(42.0)));

    // Each missing piece is refused, by TLS or by Prometheus.
    let wrong = dir_with("password", "not-the-password");
    let wrong_auth = format!(
        ", basicAuth: {{ username: {}, passwordFile: '{}' }}",
        p.username,
        wrong.1.display()
    );
    let other_ca = format!(
        "caFile: '{}', certFile: '{}', keyFile: '{}'",
        t.other_ca_file.display(),
        t.client_cert_file.display(),
        t.client_key_file.display()
    );
    for (why, yaml, wanted) in [
        ("no credentials file", String::new(), ""),
        (
            "a CA that did not sign the server's certificate",
            endpoint(&p.url, &other_ca, &auth),
            "",
        ),
        ("no client certificate", endpoint(&p.url, &ca, &auth), ""),
        ("no basic auth", endpoint(&p.url, &cert, ""), "401"),
        (
            "a wrong password",
            endpoint(&p.url, &cert, &wrong_auth),
            "401",
        ),
        (
            "credentials bound to another path",
            endpoint(&p.url.replace("/prometheus", "/other"), &cert, &auth),
            "",
        ),
    ] {
        let out = prometheus(&yaml).query("vector(42)");
        let e = out.expect_err(why).to_string();
        assert!(e.contains(wanted), "{why}: {e}");
        assert!(!e.contains(&read(&p.password_file)), "{why}: {e}");
    }
}

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap().trim().to_owned()
}

/// A file `name` holding `content`, in a folder kept as long as the guard.
fn dir_with(name: &str, content: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, content).unwrap();
    (dir, path)
}

fn hook(url: &str) -> Webhook {
    serde_saphyr::from_str(&format!(
        "name: notify\ntype: notification\nurl: '{url}'\ntimeout: 10s\n"
    ))
    .unwrap()
}

fn allow(authorization: &str) {
    use std::io::Write as _;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&TestEnv::get().hooks.authorizations)
        .unwrap();
    writeln!(f, "{authorization}").unwrap();
}

#[test]
fn webhooks_over_tls_carry_their_endpoints_credentials_and_no_others() {
    let env = TestEnv::get();
    let hooks = &env.hooks;
    let case = unique_name("hook");
    let (dir, token) = dir_with("token", &format!("{case}-first\n"));
    let localhost = hooks.url.replace("127.0.0.1", "localhost");
    let yaml = format!(
        "endpoints:\n  - url: '{}/{case}'\n    bearerTokenFile: '{}'\n    \
         headers: {{ X-Scope-OrgID: team-a }}\n    tls: {{ caFile: '{}' }}\n  \
         - url: '{localhost}'\n    tls: {{ caFile: '{}' }}\n",
        hooks.url,
        token.display(),
        env.tls.ca_file.display(),
        env.tls.ca_file.display()
    );
    let http = http(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::json!({ "case": case });
    let url = format!("{}/{case}/a", hooks.url);

    allow(&format!("Bearer {case}-first"));
    webhook::call(&http, &hook(&url), &body).unwrap();
    // Rotated as projected tokens are: a new file renamed over the old.
    let next = dir.path().join("token.next");
    std::fs::write(&next, format!("{case}-second")).unwrap();
    std::fs::rename(&next, &token).unwrap();
    allow(&format!("Bearer {case}-second"));
    webhook::call(&http, &hook(&url), &body).unwrap();

    let got = hooks.received(&format!("/{case}/"));
    let auth: Vec<&str> = got
        .iter()
        .map(|r| r["headers"]["authorization"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        auth,
        [
            format!("Bearer {case}-first"),
            format!("Bearer {case}-second")
        ]
    );
    for r in &got {
        assert_eq!(r["headers"]["x-scope-orgid"], "team-a");
        let sent: serde_json::Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
        assert_eq!(sent, body);
    }

    // The same server under another name: that endpoint's TLS settings,
    // none of the other's credentials.
    let open = format!("{localhost}/open/{case}/b");
    webhook::call(&http, &hook(&open), &body).unwrap();
    let got = hooks.received(&format!("/open/{case}/"));
    assert_eq!(got.len(), 1);
    assert!(got[0]["headers"].get("authorization").is_none(), "{got:?}");
    assert!(got[0]["headers"].get("x-scope-orgid").is_none(), "{got:?}");

    // A token the receiver refuses is a failure that names the status.
    std::fs::write(&token, format!("{case}-unknown")).unwrap();
    let e = webhook::call(&http, &hook(&url), &body)
        .unwrap_err()
        .to_string();
    assert!(e.contains("401"), "{e}");
    assert!(!e.contains("unknown"), "{e}");

    // Without the CA, the receiver's certificate is not trusted.
    let e = webhook::call(&Http::default(), &hook(&open), &body)
        .unwrap_err()
        .to_string();
    assert!(!e.is_empty());
}

/// What may pass is tried again (no answer, 408, 429, 5xx), a refusal is
/// not; bodies are signed as docs/rollouts.md says receivers verify them.
#[test]
fn webhooks_retry_what_may_pass_and_sign_their_bodies() {
    let env = TestEnv::get();
    let hooks = &env.hooks;
    let case = unique_name("retry");
    let (_dir, key) = dir_with("signing-key", &format!("{case}-key\n"));
    let yaml = format!(
        "endpoints:\n  - url: '{}/open/{case}'\n    signingKeyFile: '{}'\n    tls: {{ caFile: '{}' }}\n",
        hooks.url,
        key.display(),
        env.tls.ca_file.display()
    );
    let http = http(&yaml).unwrap_or_else(|e| panic!("{e}"));
    let body = serde_json::json!({ "case": case });

    let e = webhook::call(
        &http,
        &hook(&format!("{}/open/{case}/status/503", hooks.url)),
        &body,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Undelivered::Answered {
                status: 503,
                attempts: 3,
                ..
            }
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().ends_with("answered 503 (after 3 attempts)"),
        "{e}"
    );
    assert_eq!(hooks.received(&format!("/open/{case}/status/503")).len(), 3);

    let e = webhook::call(
        &http,
        &hook(&format!("{}/open/{case}/status/409", hooks.url)),
        &body,
    )
    .unwrap_err()
    .to_string();
    assert!(e.ends_with("answered 409"), "{e}");
    assert_eq!(hooks.received(&format!("/open/{case}/status/409")).len(), 1);

    webhook::call(
        &http,
        &hook(&format!("{}/open/{case}/signed", hooks.url)),
        &body,
    )
    .unwrap();
    let got = hooks.received(&format!("/open/{case}/signed"));
    let headers = &got[0]["headers"];
    let sent = got[0]["body"].as_str().unwrap();
    let time: u64 = headers["x-meshplan-timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let expected = meshplan_reconciler::outgoing::sign(
        format!("{case}-key").as_bytes(),
        time,
        sent.as_bytes(),
    );
    assert_eq!(
        headers["x-meshplan-signature"],
        format!("sha256={expected}")
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(time) < 60, "{time} vs {now}");
}
