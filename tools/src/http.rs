//! The one HTTP client of the tools and the tests: a plain `http://` request
//! to an admin port (or to a browser's DevTools port), made with `ureq`,
//! blocking. It answers whatever the status is, so callers check
//! [`Answer::status`] themselves; it never goes through a proxy named in
//! the environment, and speaks no TLS.

use std::time::Duration;

/// The largest answer body [`request`] reads.
pub const MAX_BODY_BYTES: u64 = 32 << 20;

/// How long [`request`] waits to connect, and for each read of the answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A server's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The status code (200, 404, …).
    pub status: u16,
    /// The `Content-Type` header, if the server sent one.
    pub content_type: Option<String>,
    /// The body, as text.
    pub body: String,
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A method other than `GET` and `POST`.
    #[error("unsupported method {0:?} (GET or POST)")]
    Method(String),
    /// The URL is bad, the server could not be reached or did not answer
    /// in time, or the body is larger than [`MAX_BODY_BYTES`] or not UTF-8.
    #[error(transparent)]
    Transport(#[from] ureq::Error),
}

/// Sends one request and returns the answer, whatever its status. `method`
/// is `GET` (`body` is not sent) or `POST` (`body` is sent as
/// `application/json`). Chunked and length-delimited bodies are both read.
pub fn request(method: &str, url: &str, body: &str) -> Result<Answer, HttpError> {
    request_with(method, url, body, None)
}

/// Like [`request`], presenting `token` as a bearer token (the manager's
/// admin API takes one on every change).
pub fn request_with(
    method: &str,
    url: &str,
    body: &str,
    token: Option<&str>,
) -> Result<Answer, HttpError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_connect(Some(TIMEOUT))
        .timeout_per_read(Some(TIMEOUT))
        .build()
        .into();
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut answer = match (method, &bearer) {
        ("GET", None) => agent.get(url).call()?,
        ("GET", Some(b)) => agent.get(url).header("Authorization", b).call()?,
        ("POST", None) => agent
            .post(url)
            .content_type("application/json")
            .send(body)?,
        ("POST", Some(b)) => agent
            .post(url)
            .header("Authorization", b)
            .content_type("application/json")
            .send(body)?,
        (other, _) => return Err(HttpError::Method(other.to_string())),
    };
    let content_type = answer
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = answer
        .body_mut()
        .with_config()
        .limit(MAX_BODY_BYTES)
        .read_to_string()?;
    Ok(Answer {
        status: answer.status().as_u16(),
        content_type,
        body,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// Serves one connection with `reply`, returning what the client sent.
    fn serve_once(reply: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // The head, then the body its Content-Length announces.
            loop {
                let n = conn.read(&mut buf).unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(at) = text.find("\r\n\r\n") {
                    let len = text[..at]
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if got.len() >= at + 4 + len || n == 0 {
                        break;
                    }
                }
            }
            conn.write_all(reply.as_bytes()).unwrap();
            String::from_utf8(got).unwrap()
        });
        (url, server)
    }

    #[test]
    fn reads_a_chunked_body() {
        let (url, server) = serve_once(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\n{\"a\"\r\n3\r\n: 1\r\n1\r\n}\r\n0\r\n\r\n",
        );
        let a = request("GET", &url, "").unwrap();
        assert_eq!(a.status, 200);
        assert_eq!(a.content_type.as_deref(), Some("application/json"));
        assert_eq!(a.body, "{\"a\": 1}");
        assert!(server.join().unwrap().starts_with("GET /x HTTP/1.1\r\n"));
    }

    #[test]
    fn answers_an_error_status_and_posts_json() {
        let (url, server) = serve_once("HTTP/1.1 400 Bad Request\r\nContent-Length: 4\r\n\r\nnope");
        let a = request("POST", &url, r#"{"pos": 1.0}"#).unwrap();
        assert_eq!((a.status, a.body.as_str()), (400, "nope"));
        let sent = server.join().unwrap().to_ascii_lowercase();
        assert!(sent.starts_with("post /x http/1.1\r\n"), "{sent}");
        assert!(
            sent.contains("content-type: application/json\r\n"),
            "{sent}"
        );
        assert!(sent.ends_with("\r\n\r\n{\"pos\": 1.0}"), "{sent}");
    }

    #[test]
    fn refuses_other_methods() {
        assert!(matches!(
            request("DELETE", "http://127.0.0.1:1/", ""),
            Err(HttpError::Method(_))
        ));
    }
}
