//! Optional tenant authentication: a file maps each tenant to the tokens that act for it.
//!
//! ```toml
//! # auth.toml — one key per tenant; a token string or a list of them
//! acme = "s3cr3t-acme"
//! beta = ["beta-ingest", "beta-grafana"]
//! ```
//!
//! With auth on, a request must carry `Authorization: Bearer TOKEN`, or `Basic` credentials
//! whose password is the token (the username is ignored: Pyroscope SDKs and Grafana put the
//! tenant or a user name there). The token decides the tenant. `X-Scope-OrgID`, if present,
//! must name that same tenant, so one tenant's token never reads or writes another's data.
//!
//! Tokens are kept only as SHA-256 digests and compared by digest, so neither the file's
//! contents nor the timing of a lookup reveal a token.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::tenant::{DEFAULT_TENANT, tenant_from_header, validate_tenant};

/// Why a request was refused; the message is one line for the client and never echoes a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct AuthError(pub String);

/// Who may act for which tenant. `Auth::disabled()` lets every request through and takes the
/// tenant from `X-Scope-OrgID`.
#[derive(Clone, Default)]
pub struct Auth {
    tokens: Option<HashMap<[u8; 32], String>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.tokens {
            None => f.write_str("Auth(disabled)"),
            Some(t) => write!(f, "Auth({} tokens)", t.len()),
        }
    }
}

impl Auth {
    /// No authentication.
    pub fn disabled() -> Self {
        Self { tokens: None }
    }

    /// Whether requests must carry a token.
    pub fn enabled(&self) -> bool {
        self.tokens.is_some()
    }

    /// Auth from `tenant → token(s)` pairs.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for (tenant, token) in pairs {
            validate_tenant(tenant)?;
            if token.len() < 8 {
                return Err(format!(
                    "tenant {tenant}: tokens must be at least 8 characters"
                ));
            }
            if let Some(other) = tokens.insert(digest(token), tenant.to_owned())
                && other != tenant
            {
                return Err(format!(
                    "tenants {other} and {tenant} share a token; each token must name one tenant"
                ));
            }
        }
        if tokens.is_empty() {
            return Err("the auth file names no tenant".into());
        }
        Ok(Self {
            tokens: Some(tokens),
        })
    }

    /// Parses the TOML form shown in the module docs.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (tenant, value) in &table {
            match value {
                toml::Value::String(t) => pairs.push((tenant.clone(), t.clone())),
                toml::Value::Array(list) => {
                    for v in list {
                        let t = v
                            .as_str()
                            .ok_or_else(|| format!("tenant {tenant}: tokens must be strings"))?;
                        pairs.push((tenant.clone(), t.to_owned()));
                    }
                }
                _ => {
                    return Err(format!(
                        "tenant {tenant}: expected a token string or a list of them"
                    ));
                }
            }
        }
        Self::from_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())))
    }

    /// Reads an auth file.
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read auth file {}: {e}", path.display()))?;
        Self::from_toml(&text).map_err(|e| format!("auth file {}: {e}", path.display()))
    }

    /// The tenant a request acts for, from its `Authorization` and `X-Scope-OrgID` headers.
    pub fn tenant(
        &self,
        authorization: Option<&[u8]>,
        org_id: Option<&[u8]>,
    ) -> Result<String, AuthError> {
        let Some(tokens) = &self.tokens else {
            return tenant_from_header(org_id).map_err(AuthError);
        };
        let Some(raw) = authorization else {
            return Err(AuthError(
                "missing Authorization header (Bearer token or Basic credentials)".into(),
            ));
        };
        let token = credential(raw)?;
        let Some(tenant) = tokens.get(&digest(&token)) else {
            return Err(AuthError("invalid token".into()));
        };
        if let Some(named) = org_id {
            let named = tenant_from_header(Some(named)).map_err(AuthError)?;
            if named != *tenant && named != DEFAULT_TENANT {
                return Err(AuthError(format!(
                    "the token is not valid for tenant {named}"
                )));
            }
        }
        Ok(tenant.clone())
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The token carried by an `Authorization` header value.
fn credential(raw: &[u8]) -> Result<String, AuthError> {
    let bad = || AuthError("malformed Authorization header".into());
    let value = std::str::from_utf8(raw).map_err(|_| bad())?.trim();
    let (scheme, rest) = value.split_once(' ').ok_or_else(bad)?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() {
            return Err(bad());
        }
        Ok(rest.to_owned())
    } else if scheme.eq_ignore_ascii_case("basic") {
        // Padding is optional: some clients (the ADBC Flight SQL driver) leave it out.
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(rest))
            .map_err(|_| bad())?;
        let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
        let (_, password) = decoded.split_once(':').ok_or_else(bad)?;
        if password.is_empty() {
            return Err(bad());
        }
        Ok(password.to_owned())
    } else {
        Err(AuthError(format!(
            "unsupported Authorization scheme {:?} (use Bearer or Basic)",
            scheme.chars().take(20).collect::<String>()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::from_toml("acme = \"acme-token-1\"\nbeta = [\"beta-token-1\", \"beta-token-2\"]\n")
            .unwrap()
    }

    fn basic(user: &str, pass: &str) -> String {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        format!("Basic {b}")
    }

    #[test]
    fn disabled_takes_the_header() {
        let a = Auth::disabled();
        assert_eq!(a.tenant(None, None).unwrap(), "anonymous");
        assert_eq!(a.tenant(Some(b"Bearer x"), Some(b"t1")).unwrap(), "t1");
        assert!(a.tenant(None, Some(b"../x")).is_err());
    }

    #[test]
    fn tokens_decide_the_tenant() {
        let a = auth();
        assert_eq!(
            a.tenant(Some(b"Bearer acme-token-1"), None).unwrap(),
            "acme"
        );
        assert_eq!(
            a.tenant(Some(b"bearer beta-token-2"), None).unwrap(),
            "beta"
        );
        let b = basic("whoever", "beta-token-1");
        assert_eq!(a.tenant(Some(b.as_bytes()), None).unwrap(), "beta");
        // Unpadded base64 ("whoever:beta-token-1" encodes with one `=`).
        assert!(b.ends_with('='), "{b}");
        let unpadded = b.trim_end_matches('=');
        assert_eq!(a.tenant(Some(unpadded.as_bytes()), None).unwrap(), "beta");
        // The header may repeat the token's tenant, never name another.
        assert_eq!(
            a.tenant(Some(b"Bearer acme-token-1"), Some(b"acme"))
                .unwrap(),
            "acme"
        );
        let e = a
            .tenant(Some(b"Bearer acme-token-1"), Some(b"beta"))
            .unwrap_err();
        assert!(e.0.contains("not valid for tenant beta"), "{e}");
    }

    #[test]
    fn refusals_name_the_problem_without_the_token() {
        let a = auth();
        for (header, want) in [
            (None, "missing Authorization"),
            (Some("Bearer nope-nope-nope"), "invalid token"),
            (Some("Bearer"), "malformed"),
            (
                Some("Token acme-token-1"),
                "unsupported Authorization scheme",
            ),
            (Some("Basic !!!"), "malformed"),
        ] {
            let e = a.tenant(header.map(str::as_bytes), None).unwrap_err();
            assert!(e.0.contains(want), "{header:?}: {e}");
            assert!(!e.0.contains("acme-token-1"), "{e}");
        }
        let b = basic("acme", "");
        assert!(a.tenant(Some(b.as_bytes()), None).is_err());
    }

    #[test]
    fn bad_files() {
        for (text, want) in [
            ("", "names no tenant"),
            ("acme = 5", "expected a token"),
            ("acme = \"short\"", "at least 8"),
            ("\"a/b\" = \"long-enough\"", "invalid tenant"),
            ("a = \"same-token\"\nb = \"same-token\"", "share a token"),
        ] {
            let e = Auth::from_toml(text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(!format!("{:?}", auth()).contains("token-1"));
    }
}
