//! Tenant IDs: where they come from and what they may look like.
//!
//! A tenant ID becomes a partition value and so a path segment in object storage, so it is
//! restricted to `[A-Za-z0-9_.-]{1,150}` and may not be `.` or `..`.

/// HTTP header naming the tenant (the same header Pyroscope, Loki and Mimir use).
pub const TENANT_HEADER: &str = "x-scope-orgid";

/// Tenant of requests that name none.
pub const DEFAULT_TENANT: &str = "anonymous";

/// The tenant named by a header value, or [`DEFAULT_TENANT`] when the header is absent.
/// The error is a one-line message for the client.
pub fn tenant_from_header(value: Option<&[u8]>) -> Result<String, String> {
    let Some(raw) = value else {
        return Ok(DEFAULT_TENANT.to_owned());
    };
    let v = std::str::from_utf8(raw).map_err(|_| "X-Scope-OrgID is not valid UTF-8".to_owned())?;
    validate_tenant(v)?;
    Ok(v.to_owned())
}

/// Checks a tenant ID; the error is a one-line message for the client.
pub fn validate_tenant(t: &str) -> Result<(), String> {
    let ok = !t.is_empty()
        && t.len() <= 150
        && t != "."
        && t != ".."
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid tenant ID {:?}: use 1-150 characters of [A-Za-z0-9_.-]",
            t.chars().take(40).collect::<String>()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants() {
        assert_eq!(tenant_from_header(None).unwrap(), "anonymous");
        assert_eq!(
            tenant_from_header(Some(b"acme-1.eu_w")).unwrap(),
            "acme-1.eu_w"
        );
        for bad in [&b""[..], b"..", b".", b"a/b", b"a b", b"\xff", &[b'a'; 151]] {
            assert!(tenant_from_header(Some(bad)).is_err(), "{bad:?}");
        }
    }
}
