//! `POST /hooks/git`: a push notification that triggers an immediate
//! fetch.
//!
//! A request is accepted when it proves it knows the shared secret:
//!
//! | sender | header | check |
//! |---|---|---|
//! | GitHub, Gitea, Forgejo | `X-Hub-Signature-256: sha256=<hex>` | HMAC-SHA256 of the body |
//! | GitLab | `X-Gitlab-Token: <secret>` | equal (constant time) |
//! | anything else | `X-Meshplan-Timestamp: <unix seconds>` and `X-Meshplan-Signature: sha256=<hex>` | HMAC-SHA256 of `<timestamp>.<body>`, timestamp within 5 minutes |
//!
//! Replays are refused: a delivery id (`X-GitHub-Delivery`,
//! `X-Gitea-Delivery`, `X-Gitlab-Event-UUID`) or a generic signature
//! already seen is rejected. And whatever a request says, it only *triggers*
//! a fetch: what gets applied comes from Git, never from the request, so a
//! forged or replayed request can at worst cause one extra fetch.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a generic request's timestamp may be from now.
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// Why a request was refused (the HTTP status and a message for the
/// sender; never the secret).
#[derive(Debug, PartialEq, Eq)]
pub struct Rejection {
    pub status: u16,
    pub message: String,
}

fn reject(status: u16, message: impl Into<String>) -> Rejection {
    Rejection {
        status,
        message: message.into(),
    }
}

/// Delivery ids and signatures seen recently (bounded).
#[derive(Debug, Default)]
pub struct Seen {
    order: VecDeque<String>,
    set: HashSet<String>,
}

impl Seen {
    const CAPACITY: usize = 4096;

    /// Records `id`; false when it was seen already.
    fn first_time(&mut self, id: String) -> bool {
        if self.set.contains(&id) {
            return false;
        }
        if self.order.len() == Self::CAPACITY {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.set.insert(id.clone());
        self.order.push_back(id);
        true
    }
}

/// Verifies a webhook request. `header` looks a header up by name
/// (case-insensitive).
pub fn verify(
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    secret: &[u8],
    now: SystemTime,
    seen: &mut Seen,
) -> Result<(), Rejection> {
    let delivery = [
        "X-GitHub-Delivery",
        "X-Gitea-Delivery",
        "X-Gitlab-Event-UUID",
    ]
    .iter()
    .find_map(|h| header(h));
    if let Some(sig) = header("X-Hub-Signature-256") {
        let hex = sig
            .strip_prefix("sha256=")
            .ok_or_else(|| reject(400, "X-Hub-Signature-256 must be sha256=<hex>"))?;
        check_mac(secret, &[body], hex)?;
    } else if let Some(token) = header("X-Gitlab-Token") {
        if !constant_time_eq(token.as_bytes(), secret) {
            return Err(reject(401, "X-Gitlab-Token does not match the secret"));
        }
    } else if let Some(sig) = header("X-Meshplan-Signature") {
        let ts = header("X-Meshplan-Timestamp")
            .ok_or_else(|| reject(400, "X-Meshplan-Signature needs X-Meshplan-Timestamp"))?;
        let secs: u64 = ts
            .trim()
            .parse()
            .map_err(|_| reject(400, "X-Meshplan-Timestamp must be Unix seconds"))?;
        let now_secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        if now_secs.abs_diff(secs) > MAX_SKEW.as_secs() {
            return Err(reject(
                401,
                "X-Meshplan-Timestamp is more than 5 minutes off",
            ));
        }
        let hex = sig
            .strip_prefix("sha256=")
            .ok_or_else(|| reject(400, "X-Meshplan-Signature must be sha256=<hex>"))?;
        check_mac(secret, &[ts.trim().as_bytes(), b".", body], hex)?;
        if !seen.first_time(format!("sig:{hex}")) {
            return Err(reject(409, "this request was already delivered (replay)"));
        }
    } else {
        return Err(reject(
            401,
            "unsigned: send X-Hub-Signature-256 (GitHub), X-Gitlab-Token (GitLab) or X-Meshplan-Signature",
        ));
    }
    if let Some(id) = delivery {
        if !seen.first_time(format!("id:{id}")) {
            return Err(reject(
                409,
                format!("delivery {id} was already received (replay)"),
            ));
        }
    }
    Ok(())
}

/// HMAC-SHA256 over `parts`, in order; `None` for an unusable key.
fn mac(secret: &[u8], parts: &[&[u8]]) -> Option<Hmac<Sha256>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    for p in parts {
        mac.update(p);
    }
    Some(mac)
}

fn check_mac(secret: &[u8], parts: &[&[u8]], hex: &str) -> Result<(), Rejection> {
    let expected = decode_hex(hex).ok_or_else(|| reject(400, "the signature is not hex"))?;
    let mac = mac(secret, parts).ok_or_else(|| reject(500, "the webhook secret is unusable"))?;
    // `verify_slice` compares in constant time.
    mac.verify_slice(&expected)
        .map_err(|_| reject(401, "the signature does not match the secret"))
}

/// The hex HMAC-SHA256 of `parts` (for senders and tests).
pub fn sign(secret: &[u8], parts: &[&[u8]]) -> String {
    let Some(mac) = mac(secret, parts) else {
        return String::new();
    };
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret";

    fn headers<'a>(pairs: &'a [(&'a str, String)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn accepts_a_github_signature_once_per_delivery() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let h = [
            (
                "x-hub-signature-256",
                format!("sha256={}", sign(SECRET, &[body])),
            ),
            ("X-GitHub-Delivery", "d-1".to_owned()),
        ];
        let mut seen = Seen::default();
        let now = SystemTime::now();
        assert_eq!(verify(&headers(&h), body, SECRET, now, &mut seen), Ok(()));
        let replay = verify(&headers(&h), body, SECRET, now, &mut seen).unwrap_err();
        assert_eq!(replay.status, 409);
    }

    #[test]
    fn rejects_a_wrong_or_missing_signature() {
        let body = b"{}";
        let mut seen = Seen::default();
        let now = SystemTime::now();
        let bad = [(
            "X-Hub-Signature-256",
            format!("sha256={}", sign(b"other", &[body])),
        )];
        assert_eq!(
            verify(&headers(&bad), body, SECRET, now, &mut seen)
                .unwrap_err()
                .status,
            401
        );
        assert_eq!(
            verify(&headers(&[]), body, SECRET, now, &mut seen)
                .unwrap_err()
                .status,
            401
        );
        let tampered = [(
            "X-Hub-Signature-256",
            format!("sha256={}", sign(SECRET, &[body])),
        )];
        assert_eq!(
            verify(&headers(&tampered), b"{ }", SECRET, now, &mut seen)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn accepts_the_gitlab_token_and_nothing_else() {
        let mut seen = Seen::default();
        let now = SystemTime::now();
        let ok = [("X-Gitlab-Token", "s3cret".to_owned())];
        assert!(verify(&headers(&ok), b"", SECRET, now, &mut seen).is_ok());
        let bad = [("X-Gitlab-Token", "s3cre".to_owned())];
        assert_eq!(
            verify(&headers(&bad), b"", SECRET, now, &mut seen)
                .unwrap_err()
                .status,
            401
        );
    }

    #[test]
    fn generic_signatures_are_bound_to_a_fresh_timestamp_and_used_once() {
        let body = b"push";
        let now = SystemTime::now();
        let ts = now
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            .to_string();
        let h = [
            ("X-Meshplan-Timestamp", ts.clone()),
            (
                "X-Meshplan-Signature",
                format!("sha256={}", sign(SECRET, &[ts.as_bytes(), b".", body])),
            ),
        ];
        let mut seen = Seen::default();
        assert!(verify(&headers(&h), body, SECRET, now, &mut seen).is_ok());
        assert_eq!(
            verify(&headers(&h), body, SECRET, now, &mut seen)
                .unwrap_err()
                .status,
            409
        );
        let later = now + Duration::from_secs(600);
        let mut fresh = Seen::default();
        assert_eq!(
            verify(&headers(&h), body, SECRET, later, &mut fresh)
                .unwrap_err()
                .status,
            401
        );
    }
}
