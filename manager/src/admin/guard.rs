//! Who may use the admin HTTP. Reading (the cell view, `/api/*` GETs,
//! `/metrics`) needs no secret; changing anything (every `POST`) needs the
//! bearer token generated into the data directory on first start. Every
//! request must name an allowed host (an IP literal, `localhost`, or a name
//! the operator allowed), so a page on another site cannot reach the API
//! through DNS rebinding; and a state-changing request that says where it
//! comes from (`Origin`) must come from this very host, so a cross-site
//! form post is refused even before its missing token is.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the admin token lives in a data directory.
pub fn token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// The admin token of `data_dir`, generated (32 random bytes, hex, readable
/// by its owner alone) on first use.
pub fn load_or_create_token(data_dir: &Path) -> std::io::Result<String> {
    let path = token_path(data_dir);
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut bytes = [0u8; 32];
    rand::rand_core::UnwrapErr(rand::rngs::SysRng).fill_bytes(&mut bytes);
    let token = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    tessera::net::write_file_atomic(&path, format!("{token}\n").as_bytes(), true)?;
    Ok(token)
}

/// The admin port's rules.
#[derive(Debug)]
pub struct Guard {
    token: String,
    /// Host names allowed besides IP literals and `localhost`.
    hosts: Vec<String>,
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` header names a host this server is not known as.
    Host,
    /// A state-changing request from another origin.
    Origin,
    /// A state-changing request without the right bearer token.
    Token,
}

impl Guard {
    /// Rules with this token, allowing `hosts` besides IP literals and
    /// `localhost`.
    pub fn new(token: String, hosts: Vec<String>) -> Guard {
        Guard {
            token,
            hosts: hosts.into_iter().map(|h| h.to_ascii_lowercase()).collect(),
        }
    }

    /// Whether a request with these headers may go on.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if let Some(host) = host {
            if !self.host_allowed(host) {
                return Err(Refusal::Host);
            }
        }
        if matches!(*method, Method::GET | Method::HEAD) {
            return Ok(());
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let same = origin
                .to_str()
                .ok()
                .and_then(|o| o.split_once("://"))
                .is_some_and(|(_, authority)| Some(authority) == host);
            if !same {
                return Err(Refusal::Origin);
            }
        }
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        match bearer {
            Some(t) if same_secret(t.trim(), &self.token) => Ok(()),
            _ => Err(Refusal::Token),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        let name = match host.strip_prefix('[') {
            // [v6]:port
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => host.rsplit_once(':').map_or(host, |(h, _)| h),
        };
        let name = name.to_ascii_lowercase();
        name.parse::<IpAddr>().is_ok() || name == "localhost" || self.hosts.contains(&name)
    }
}

/// Compares two secrets in time that depends on their lengths only.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The middleware: refuses what [`Guard::check`] refuses, with 421 for a
/// host it is not, 403 for another origin, 401 without the token.
pub async fn guard(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    match g.check(req.method(), req.headers()) {
        Ok(()) => next.run(req).await,
        Err(Refusal::Host) => (
            StatusCode::MISDIRECTED_REQUEST,
            "this server is not known by that host name\n",
        )
            .into_response(),
        Err(Refusal::Origin) => {
            (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response()
        }
        Err(Refusal::Token) => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "this needs the admin token (Authorization: Bearer <data/admin.token>)\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).expect("header"));
        }
        h
    }

    #[test]
    fn reads_need_an_allowed_host_and_nothing_else() {
        let g = Guard::new("s3cret".into(), vec!["ops.example".into()]);
        for host in [
            "127.0.0.1:7080",
            "[::1]:7080",
            "localhost:7080",
            "OPS.example",
            "10.1.2.3",
        ] {
            assert_eq!(
                g.check(&Method::GET, &headers(&[(header::HOST, host)])),
                Ok(()),
                "{host}"
            );
        }
        let rebound = headers(&[(header::HOST, "attacker.example:7080")]);
        assert_eq!(g.check(&Method::GET, &rebound), Err(Refusal::Host));
    }

    #[test]
    fn changes_need_the_token_from_this_origin() {
        let g = Guard::new("s3cret".into(), Vec::new());
        let host = (header::HOST, "127.0.0.1:7080");
        let post = Method::POST;
        assert_eq!(
            g.check(&post, &headers(std::slice::from_ref(&host))),
            Err(Refusal::Token)
        );
        let wrong = (header::AUTHORIZATION, "Bearer s3cret-not");
        assert_eq!(
            g.check(&post, &headers(&[host.clone(), wrong])),
            Err(Refusal::Token)
        );
        let right = (header::AUTHORIZATION, "Bearer s3cret");
        assert_eq!(
            g.check(&post, &headers(&[host.clone(), right.clone()])),
            Ok(())
        );
        let same = (header::ORIGIN, "http://127.0.0.1:7080");
        assert_eq!(
            g.check(&post, &headers(&[host.clone(), right.clone(), same])),
            Ok(())
        );
        let other = (header::ORIGIN, "http://evil.example");
        assert_eq!(
            g.check(&post, &headers(&[host, right, other])),
            Err(Refusal::Origin)
        );
    }

    #[test]
    fn the_token_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = load_or_create_token(dir.path()).expect("made");
        let b = load_or_create_token(dir.path()).expect("read");
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(token_path(dir.path()))
            .expect("file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
