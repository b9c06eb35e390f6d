//! Which URLs get which credentials; secrets re-read, never shown.

use std::io::Write as _;

use super::credentials::{File, Origin};
use super::*;

fn origin(url: &str) -> Origin {
    Origin::parse(url).unwrap_or_else(|| panic!("{url}"))
}

#[test]
fn a_prefix_covers_its_own_origin_and_path_only() {
    let p = origin("https://Mimir.example.com/prometheus");
    for yes in [
        "https://mimir.example.com/prometheus",
        "https://mimir.example.com/prometheus/api/v1/query?query=up",
        "https://mimir.example.com:443/prometheus/api",
        "HTTPS://mimir.example.com/prometheus/",
    ] {
        assert!(p.covers(&origin(yes)), "{yes}");
    }
    for no in [
        "http://mimir.example.com/prometheus/api",
        "https://mimir.example.com:8443/prometheus/api",
        "https://mimir.example.com/prometheus-evil/api",
        "https://mimir.example.com/",
        "https://mimir.example.com.evil.org/prometheus/api",
        "https://evil.org/prometheus/api",
        // The user info is not where a request goes.
        "https://mimir.example.com@evil.org/prometheus/api",
    ] {
        assert!(!p.covers(&origin(no)), "{no}");
    }
    let root = origin("http://127.0.0.1:9090");
    assert!(root.covers(&origin("http://127.0.0.1:9090/api/v1/query")));
    assert!(!root.covers(&origin("http://127.0.0.1:9091/api/v1/query")));
    assert_eq!(origin("http://[::1]:8080/x").port, 8080);
    assert_eq!(origin("http://[::1]/x").port, 80);
    assert!(Origin::parse("ftp://h/x").is_none());
    assert!(Origin::parse("https:///x").is_none());
}

fn file(yaml: &str) -> Result<File, Error> {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(yaml.as_bytes()).unwrap();
    File::load(f.path())
}

#[test]
fn mistakes_in_the_file_are_errors_when_it_is_loaded() {
    for (yaml, wanted) in [
        ("endpoints: [{ url: 'ftp://h' }]", "not an http"),
        ("endpoints: [{ url: 'https://u:p@h' }]", "no user info"),
        ("endpoints: [{ url: 'https://h/?x=1' }]", "no user info, query"),
        (
            "endpoints: [{ url: 'https://h' }, { url: 'https://H:443' }]",
            "listed twice",
        ),
        (
            "endpoints: [{ url: 'https://h', bearerTokenFile: /t, basicAuth: { username: u, passwordFile: /p } }]",
            "keep one",
        ),
        ("endpoints: [{ url: 'https://h', headers: { 'a b': c } }]", "not an HTTP header name"),
        ("endpoints: [{ url: 'https://h', headers: { Authorization: x } }]", "stay in files"),
        ("endpoints: [{ url: 'https://h', headers: { X-A: \"a\\r\\nb\" } }]", "control"),
        ("endpoints: [{ url: 'https://h', tls: { certFile: /c } }]", "both"),
        ("endpoints: [{ url: 'https://h', token: x }]", "unknown field"),
    ] {
        let e = file(yaml).err().unwrap_or_else(|| panic!("{yaml} was accepted"));
        assert!(e.to_string().contains(wanted), "{yaml}: {e}");
    }
}

#[test]
fn secret_files_are_checked_at_start_and_reread_when_they_change() {
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let yaml = format!(
        "endpoints: [{{ url: 'https://h/p', bearerTokenFile: '{}' }}]",
        token.display()
    );
    // Missing at start: an error that names the file.
    let e = Http::new(file(&yaml).unwrap()).unwrap_err().to_string();
    assert!(e.contains("token"), "{e}");

    std::fs::write(&token, "first-secret\n").unwrap();
    let http = Http::new(file(&yaml).unwrap()).unwrap();
    let b = http.endpoint("https://h/p/x").unwrap().unwrap();
    let Auth::Bearer(secret) = &b.auth else {
        panic!("a bearer token")
    };
    assert_eq!(secret.read().unwrap(), "first-secret");
    // Rotated as a projected token is: a new file swapped in.
    let next = dir.path().join("token.new");
    std::fs::write(&next, "second-secret-longer").unwrap();
    std::fs::rename(&next, &token).unwrap();
    assert_eq!(secret.read().unwrap(), "second-secret-longer");
    // A value that would split the header is refused, without its content.
    std::fs::write(&token, "a\r\nX-Evil: 1").unwrap();
    let e = secret.read().unwrap_err().to_string();
    assert!(!e.contains("Evil"), "{e}");

    // No prefix, no credentials; the debug text holds no secret.
    assert!(http.endpoint("https://h/other").unwrap().is_none());
    assert!(http.endpoint("https://h.evil/p/x").unwrap().is_none());
    std::fs::write(&token, "third-secret").unwrap();
    let _ = secret.read();
    let shown = format!("{http:?}");
    assert!(!shown.contains("secret"), "{shown}");
}

#[test]
fn the_longest_prefix_wins() {
    let http = Http::new(
        file(
            "endpoints:\n  - { url: 'https://h', headers: { X-Who: root } }\n  \
             - { url: 'https://h/prometheus', headers: { X-Who: prom } }\n",
        )
        .unwrap(),
    )
    .unwrap();
    let who = |url: &str| http.endpoint(url).unwrap().map(|b| b.headers[0].1.clone());
    assert_eq!(
        who("https://h/prometheus/api/v1/query").as_deref(),
        Some("prom")
    );
    assert_eq!(who("https://h/hooks").as_deref(), Some("root"));
    assert_eq!(who("http://h/hooks"), None);
}

#[test]
fn certificates_must_be_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, "not a certificate").unwrap();
    let yaml = format!(
        "endpoints: [{{ url: 'https://h', tls: {{ caFile: '{}' }} }}]",
        ca.display()
    );
    let e = Http::new(file(&yaml).unwrap()).unwrap_err().to_string();
    assert!(e.contains("no PEM certificate"), "{e}");
}

#[test]
fn shown_urls_carry_no_credentials() {
    assert_eq!(
        shown_url("https://user:s3cret@hooks.example.com/x?token=abc"),
        "https://hooks.example.com/x"
    );
    assert_eq!(shown_url("http://h:8080/p"), "http://h:8080/p");
    assert_eq!(shown_url("http://h/a@b"), "http://h/a@b");
}

/// The signature a receiver recomputes: HMAC-SHA256 of
/// `<timestamp>.<body>`, lower-case hex (vector from Python's `hmac`).
#[test]
fn bodies_are_signed_as_documented() {
    assert_eq!(
        sign(b"key", 1_700_000_000, br#"{"a":1}"#),
        "a438e398bfafc57e4396bb7fc2304422f0f768e965d073ca313cb52e22e6ad03"
    );
}
