//! The rollout's own routes: the preview route and sticky canaries.

use super::Doc;
use crate::diagnostic::Code;
use crate::intent::rollout::{Rollout, Strategy};
use crate::intent::ServiceIntent;

/// The longest cookie name accepted (browsers keep names and values of
/// kilobytes; one this long is a mistake).
const MAX_COOKIE_NAME: usize = 64;
/// Browsers cap a cookie's `Max-Age` at 400 days (RFC 6265bis, "The
/// Max-Age Attribute").
const MAX_AGE_DAYS: u64 = 400;

pub(super) fn routes(d: &mut Doc<'_, ServiceIntent>, ro: &Rollout, l7: bool) {
    if let Some(p) = &ro.preview {
        if ro.strategy == Strategy::AbTest {
            d.error(Code::Conflict, "spec.rollout.preview", "an A/B test's `abTest.match` already sends its requests to the canary: a preview has no place beside it");
        } else if p.matches.is_empty() {
            d.error_key(
                Code::MissingField,
                "spec.rollout.preview.match",
                "a preview needs a `match`: the requests (a header, a cookie) sent to the canary",
            );
        }
    }
    let Some(sa) = &ro.session_affinity else {
        return;
    };
    let at = "spec.rollout.sessionAffinity";
    match ro.strategy {
        Strategy::BlueGreen => {
            d.error(Code::Conflict, at, "a blue/green switches all traffic at once: no user is split from the rest to keep on the canary (session affinity is for `canary` and `mirror`)");
        }
        Strategy::AbTest => {
            d.error(Code::Conflict, at, "an A/B test's `abTest.match` decides who reaches the canary: session affinity has no place beside it");
        }
        Strategy::Canary | Strategy::Mirror if !l7 => {
            d.error(Code::Conflict, at, "session affinity is a cookie: it needs an http, http2 or grpc port, and this service only has tcp ports");
        }
        Strategy::Canary | Strategy::Mirror => {}
    }
    if let Some(name) = &sa.cookie_name {
        if !is_cookie_token(name) {
            d.error(
                Code::InvalidValue,
                format_args!("{at}.cookieName"),
                format!("cookie name `{}` is not a cookie name: use 1 to {MAX_COOKIE_NAME} letters, digits and `!#$&'*+-.^_`|~` (no spaces, `=`, `;`, `%` or quotes), not starting `__Host-` or `__Secure-` (browsers keep those only from https with `Secure`)", name.escape_debug()),
            );
        }
    }
    if let Some(age) = sa.max_age {
        if age.as_millis() < 1000 || age.as_millis() > MAX_AGE_DAYS * 86_400_000 {
            d.error(
                Code::OutOfRange,
                format_args!("{at}.maxAge"),
                format!("maxAge {age} is out of range: a cookie's lifetime is from 1s to {MAX_AGE_DAYS}d (browsers cap it at 400 days)"),
            );
        }
    }
}

/// A cookie name as RFC 6265 allows it (an HTTP token), less `%`, which
/// Envoy reads as a variable in a header value (Istio's and Consul's
/// response headers), and the `__Host-` and `__Secure-` prefixes, which
/// browsers accept only with a `Secure` cookie.
fn is_cookie_token(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (1..=MAX_COOKIE_NAME).contains(&name.len())
        && !lower.starts_with("__host-")
        && !lower.starts_with("__secure-")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$&'*+-.^_`|~".contains(&b))
}
