//! The web UI: three fixed files built from `ui/src` (TypeScript) by `scripts/build-ui.sh`
//! into `ui/dist` and embedded in the binary, so nothing is read from the filesystem at run
//! time and only these three paths are served:
//!
//! * `GET /` (and `/ui/`, `/ui/index.html`): the page;
//! * `GET /ui/app.js`: the compiled script;
//! * `GET /ui/style.css`: the style sheet.
//!
//! Every answer carries an `ETag` (a hash of the file), `Cache-Control: no-cache` (browsers
//! revalidate, and a matching `If-None-Match` is answered 304 without a body) and
//! `X-Content-Type-Options: nosniff`; the page also carries a Content Security Policy that
//! allows scripts, styles and requests to this origin only.
//!
//! With tenant tokens on (`--auth-file`), the page and its files need a valid token too: a
//! request without one gets 401 with `WWW-Authenticate: Basic`, so the browser asks for a user
//! name (any) and password (the token) and then sends those credentials with every request of
//! the page, its API calls included; the token field of the page works as well.

use std::sync::OnceLock;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use stackdrift_model::auth::Auth;
use stackdrift_model::tenant::TENANT_HEADER;

/// `ui/dist/index.html`.
pub const INDEX_HTML: &str = include_str!("../../ui/dist/index.html");
/// `ui/dist/app.js`.
pub const APP_JS: &str = include_str!("../../ui/dist/app.js");
/// `ui/dist/style.css`.
pub const STYLE_CSS: &str = include_str!("../../ui/dist/style.css");

/// The page's Content Security Policy: everything from this origin only, no inline script.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<HeaderValue>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Self {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    /// A strong ETag: FNV-1a 64 of the content, quoted.
    fn etag(&self) -> &HeaderValue {
        self.etag.get_or_init(|| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in self.body.bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
            HeaderValue::from_str(&format!("\"{h:016x}\"")).expect("hex is a valid header value")
        })
    }

    fn respond(&self, headers: &HeaderMap, csp: bool) -> Response {
        let etag = self.etag().clone();
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(',')
                    .any(|t| t.trim() == "*" || t.trim().trim_start_matches("W/") == etag)
            });
        let mut resp = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static(self.content_type),
                )],
                self.body,
            )
                .into_response()
        };
        let h = resp.headers_mut();
        h.insert(header::ETAG, etag);
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if csp {
            h.insert(
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            );
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        resp
    }
}

static INDEX: Asset = Asset::new(INDEX_HTML, "text/html; charset=utf-8");
static APP: Asset = Asset::new(APP_JS, "text/javascript; charset=utf-8");
static STYLE: Asset = Asset::new(STYLE_CSS, "text/css; charset=utf-8");

/// `None` when the request may see the UI, else the 401 answer.
fn refused(auth: &Auth, headers: &HeaderMap) -> Option<Response> {
    if !auth.enabled() {
        return None;
    }
    let e = auth
        .tenant(
            headers.get(header::AUTHORIZATION).map(|v| v.as_bytes()),
            headers.get(TENANT_HEADER).map(|v| v.as_bytes()),
        )
        .err()?;
    Some(
        (
            StatusCode::UNAUTHORIZED,
            [(
                header::WWW_AUTHENTICATE,
                "Basic realm=\"stackdrift\", charset=\"UTF-8\"",
            )],
            format!(
                "{}: sign in with any user name and your stackdrift token as the password\n",
                e.0
            ),
        )
            .into_response(),
    )
}

async fn index(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    refused(&auth, &headers).unwrap_or_else(|| INDEX.respond(&headers, true))
}

async fn app(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    refused(&auth, &headers).unwrap_or_else(|| APP.respond(&headers, false))
}

async fn style(State(auth): State<Auth>, headers: HeaderMap) -> Response {
    refused(&auth, &headers).unwrap_or_else(|| STYLE.respond(&headers, false))
}

/// Routes of the UI: `/`, `/ui/`, `/ui/index.html`, `/ui/app.js`, `/ui/style.css`; with
/// tokens on, only for requests carrying a valid one.
pub fn routes(auth: Auth) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/", get(index))
        .route("/ui/index.html", get(index))
        .route("/ui/app.js", get(app))
        .route("/ui/style.css", get(style))
        .with_state(auth)
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(v) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, v);
        }
        routes(Auth::disabled())
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    fn header_of(resp: &Response, name: header::HeaderName) -> &str {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    #[tokio::test]
    async fn serves_the_embedded_files_with_types_and_cache_headers() {
        for (path, ty, body) in [
            ("/", "text/html", INDEX_HTML),
            ("/ui/", "text/html", INDEX_HTML),
            ("/ui/app.js", "text/javascript", APP_JS),
            ("/ui/style.css", "text/css", STYLE_CSS),
        ] {
            let resp = get(path, None).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
            assert!(
                header_of(&resp, header::CONTENT_TYPE).starts_with(ty),
                "{path}"
            );
            assert_eq!(header_of(&resp, header::CACHE_CONTROL), "no-cache");
            let etag = header_of(&resp, header::ETAG).to_owned();
            assert!(etag.starts_with('"') && etag.len() == 18, "{etag}");
            let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
                .await
                .unwrap();
            assert_eq!(bytes, body.as_bytes(), "{path}");
            // Revalidation with the same ETag: 304, no body.
            let resp = get(path, Some(&etag)).await;
            assert_eq!(resp.status(), StatusCode::NOT_MODIFIED, "{path}");
            let resp = get(path, Some("\"0000000000000000\"")).await;
            assert_eq!(resp.status(), StatusCode::OK, "{path}");
        }
        assert!(
            header_of(&get("/", None).await, header::CONTENT_SECURITY_POLICY)
                .contains("script-src 'self'")
        );
    }

    #[tokio::test]
    async fn nothing_else_is_served() {
        for path in [
            "/ui/../Cargo.toml",
            "/ui/%2e%2e/Cargo.toml",
            "/ui/app.ts",
            "/ui/dist/app.js",
            "/ui",
            "/index.html",
        ] {
            assert_eq!(
                get(path, None).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn with_tokens_on_the_page_needs_one() {
        use base64::Engine;
        let auth = Auth::from_pairs([("acme", "acme-token-1")]).unwrap();
        let call = |authorization: Option<String>| {
            let mut req = Request::get("/ui/app.js");
            if let Some(a) = authorization {
                req = req.header(header::AUTHORIZATION, a);
            }
            routes(auth.clone()).oneshot(req.body(Body::empty()).unwrap())
        };
        let resp = call(None).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(header_of(&resp, header::WWW_AUTHENTICATE).starts_with("Basic realm="));
        let resp = call(Some("Bearer wrong-token".into())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        let basic = base64::engine::general_purpose::STANDARD.encode("me:acme-token-1");
        let resp = call(Some(format!("Basic {basic}"))).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = call(Some("Bearer acme-token-1".into())).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
    }

    #[test]
    fn the_page_loads_the_script_and_style() {
        assert!(INDEX_HTML.contains("ui/app.js"));
        assert!(INDEX_HTML.contains("ui/style.css"));
    }
}
