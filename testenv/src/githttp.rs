//! A smart-HTTP Git server for tests: checks basic auth (a user and
//! password, or any user with a token as the password, as GitHub and GitLab
//! accept) and hands each request to Debian's `git http-backend` as CGI.
//!
//! A CGI process per *request* is how git's own server works; it is test
//! infrastructure and handles a handful of requests per clone.

use std::io::{Cursor, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

use base64::Engine as _;
use tiny_http::{Header, Request, Response, Server, StatusCode};

/// Who may fetch and push.
#[derive(Clone, Debug)]
pub struct Credentials {
    pub user: String,
    pub password: String,
    pub token: String,
}

impl Credentials {
    /// Whether an `Authorization` header value grants access.
    pub fn accepts(&self, header: Option<&str>) -> bool {
        let Some(h) = header else { return false };
        if let Some(token) = h.strip_prefix("Bearer ") {
            return token.trim() == self.token;
        }
        let Some(b64) = h.strip_prefix("Basic ") else {
            return false;
        };
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
            return false;
        };
        let Ok(raw) = String::from_utf8(raw) else {
            return false;
        };
        match raw.split_once(':') {
            Some((user, pass)) => {
                (user == self.user && pass == self.password) || pass == self.token
            }
            None => false,
        }
    }
}

/// Serves the bare repositories under `root` until the process is killed.
pub fn serve(listen: &str, root: PathBuf, creds: Credentials) -> std::io::Result<()> {
    let server = Server::http(listen).map_err(std::io::Error::other)?;
    eprintln!("git-http: serving {} on http://{listen}", root.display());
    for request in server.incoming_requests() {
        // One thread per connection's request: clones are concurrent in tests.
        let root = root.clone();
        let creds = creds.clone();
        std::thread::spawn(move || {
            if let Err(e) = handle(request, &root, &creds) {
                eprintln!("git-http: {e}");
            }
        });
    }
    Ok(())
}

fn header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.headers()
        .iter()
        .find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

fn handle(mut req: Request, root: &std::path::Path, creds: &Credentials) -> std::io::Result<()> {
    let auth = header(&req, "Authorization");
    if !creds.accepts(auth) {
        eprintln!("git-http: 401 {} {}", req.method(), req.url());
        let challenge = Header::from_bytes("WWW-Authenticate", "Basic realm=\"meshplan-test\"")
            .expect("static header");
        return req.respond(
            Response::from_string("authentication required\n")
                .with_status_code(401)
                .with_header(challenge),
        );
    }
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", path)
        .env("QUERY_STRING", query)
        .env("REQUEST_METHOD", req.method().as_str())
        .env("REMOTE_USER", "test")
        .env("REMOTE_ADDR", "127.0.0.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (h, var) in [
        ("Content-Type", "CONTENT_TYPE"),
        ("Content-Encoding", "HTTP_CONTENT_ENCODING"),
        ("Git-Protocol", "GIT_PROTOCOL"),
    ] {
        if let Some(v) = header(&req, h) {
            cmd.env(var, v);
        }
    }
    let mut body = Vec::new();
    req.as_reader().read_to_end(&mut body)?;
    cmd.env("CONTENT_LENGTH", body.len().to_string());
    let mut child = cmd.spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    // Write the body on another thread: the backend may answer before it
    // has read everything, and both pipes must drain.
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let mut out = Vec::new();
    child.stdout.take().expect("piped").read_to_end(&mut out)?;
    let _ = writer.join();
    child.wait()?;
    let (status, headers, body) = parse_cgi(&out);
    let mut resp = Response::new(
        StatusCode(status),
        headers,
        Cursor::new(body.to_vec()),
        Some(body.len()),
        None,
    );
    if status >= 400 {
        resp = resp.with_status_code(status);
    }
    eprintln!("git-http: {status} {} {path}", req.method());
    req.respond(resp)
}

/// Splits a CGI response into status, headers and body.
fn parse_cgi(out: &[u8]) -> (u16, Vec<Header>, &[u8]) {
    let (head, body) = match find(out, b"\r\n\r\n") {
        Some(i) => (&out[..i], &out[i + 4..]),
        None => match find(out, b"\n\n") {
            Some(i) => (&out[..i], &out[i + 2..]),
            None => return (502, Vec::new(), out),
        },
    };
    let mut status = 200;
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(head).lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if k.eq_ignore_ascii_case("Status") {
            status = v
                .split(' ')
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(502);
        } else if let Ok(h) = Header::from_bytes(k.trim(), v) {
            headers.push(h);
        }
    }
    (status, headers, body)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            user: "alice".into(),
            password: "s3cret".into(),
            token: "tok".into(),
        }
    }

    fn basic(s: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    }

    #[test]
    fn accepts_the_password_or_the_token_and_nothing_else() {
        let c = creds();
        assert!(c.accepts(Some(&basic("alice:s3cret"))));
        assert!(c.accepts(Some(&basic("x-access-token:tok"))));
        assert!(c.accepts(Some("Bearer tok")));
        assert!(!c.accepts(Some(&basic("alice:wrong"))));
        assert!(!c.accepts(Some(&basic("bob:s3cret"))));
        assert!(!c.accepts(Some("Bearer nope")));
        assert!(!c.accepts(Some("Basic !!!")));
        assert!(!c.accepts(None));
    }

    #[test]
    fn parses_cgi_status_and_headers() {
        let (s, h, b) = parse_cgi(b"Status: 404 Not Found\r\nContent-Type: text/plain\r\n\r\nnope");
        assert_eq!(s, 404);
        assert_eq!(h.len(), 1);
        assert_eq!(b, b"nope");
        let (s, _, b) = parse_cgi(b"Content-Type: x\n\nbody");
        assert_eq!((s, b), (200, &b"body"[..]));
    }
}
