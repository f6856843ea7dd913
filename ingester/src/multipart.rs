//! A small `multipart/form-data` reader for `/ingest` bodies (RFC 7578), over a body that is
//! already in memory and size-capped: it only slices, never copies or allocates per byte.

use memchr::memmem;

/// One part of a multipart body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'a> {
    /// The `name` of its `Content-Disposition: form-data`.
    pub name: String,
    /// Its `Content-Type`, if given.
    pub content_type: Option<String>,
    /// Its content.
    pub data: &'a [u8],
}

/// The boundary of a `multipart/form-data; boundary=…` content type.
pub fn boundary(content_type: &str) -> Result<String, String> {
    let mut params = content_type.split(';');
    let kind = params.next().unwrap_or("").trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(format!("expected multipart/form-data, got {kind:?}"));
    }
    for p in params {
        if let Some((k, v)) = p.split_once('=')
            && k.trim().eq_ignore_ascii_case("boundary")
        {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(v);
            if v.is_empty() || v.len() > 70 {
                return Err("multipart boundary must be 1-70 characters".into());
            }
            return Ok(v.to_owned());
        }
    }
    Err("multipart/form-data without a boundary parameter".into())
}

/// Splits `body` into its parts. At most `max_parts` parts are read.
pub fn parse<'a>(
    body: &'a [u8],
    boundary: &str,
    max_parts: usize,
) -> Result<Vec<Part<'a>>, String> {
    let delimiter = format!("--{boundary}");
    let finder = memmem::Finder::new(delimiter.as_bytes());
    // The body starts with the first delimiter (a preamble before it is allowed).
    let Some(first) = finder.find(body) else {
        return Err("multipart body has no boundary delimiter".into());
    };
    let next_delimiter = format!("\r\n--{boundary}");
    let next = memmem::Finder::new(next_delimiter.as_bytes());
    let mut pos = first + delimiter.len();
    let mut parts = Vec::new();
    loop {
        let rest = &body[pos..];
        if rest.starts_with(b"--") {
            return Ok(parts); // closing delimiter; an epilogue is ignored
        }
        let rest = skip_line_end(rest).ok_or("multipart delimiter not followed by a line end")?;
        pos = body.len() - rest.len();
        if parts.len() == max_parts {
            return Err(format!("multipart body has more than {max_parts} parts"));
        }
        let header_end = memmem::find(rest, b"\r\n\r\n")
            .ok_or("multipart part headers do not end with an empty line")?;
        let headers = std::str::from_utf8(&rest[..header_end])
            .map_err(|_| "multipart part headers are not valid UTF-8")?;
        let data_start = pos + header_end + 4;
        let data_len = next
            .find(&body[data_start..])
            .ok_or("multipart body ends without a closing delimiter")?;
        let (name, content_type) = part_headers(headers)?;
        parts.push(Part {
            name,
            content_type,
            data: &body[data_start..data_start + data_len],
        });
        pos = data_start + data_len + next_delimiter.len();
    }
}

fn skip_line_end(b: &[u8]) -> Option<&[u8]> {
    // Whitespace may follow a delimiter (RFC 2046 "transport padding").
    let mut b = b;
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    b.strip_prefix(b"\r\n").or_else(|| b.strip_prefix(b"\n"))
}

fn part_headers(headers: &str) -> Result<(String, Option<String>), String> {
    let mut name = None;
    let mut content_type = None;
    for line in headers.split("\r\n") {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let key = key.trim();
        if key.eq_ignore_ascii_case("content-disposition") {
            for p in value.split(';').skip(1) {
                if let Some((k, v)) = p.split_once('=')
                    && k.trim().eq_ignore_ascii_case("name")
                {
                    let v = v.trim();
                    name = Some(
                        v.strip_prefix('"')
                            .and_then(|v| v.strip_suffix('"'))
                            .unwrap_or(v)
                            .to_owned(),
                    );
                }
            }
        } else if key.eq_ignore_ascii_case("content-type") {
            content_type = Some(value.trim().to_owned());
        }
    }
    let name = name.ok_or("multipart part without a Content-Disposition name")?;
    Ok((name, content_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries() {
        assert_eq!(
            boundary("multipart/form-data; boundary=abc").unwrap(),
            "abc"
        );
        assert_eq!(
            boundary("Multipart/Form-Data;charset=x; boundary=\"a b\"").unwrap(),
            "a b"
        );
        assert!(boundary("multipart/form-data").is_err());
        assert!(boundary("multipart/mixed; boundary=x").is_err());
        assert!(boundary("multipart/form-data; boundary=").is_err());
    }

    #[test]
    fn parts() {
        let body = b"preamble\r\n--XyZ\r\n\
Content-Disposition: form-data; name=\"profile\"; filename=\"profile.pprof\"\r\n\
Content-Type: application/octet-stream\r\n\r\n\
\x1f\x8b\r\n--X binary\r\n\
--XyZ\r\n\
Content-Disposition: form-data; name=sample_type_config\r\n\r\n\
{\"cpu\":{}}\r\n\
--XyZ--\r\nepilogue";
        let parts = parse(body, "XyZ", 8).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "profile");
        assert_eq!(
            parts[0].content_type.as_deref(),
            Some("application/octet-stream")
        );
        assert_eq!(parts[0].data, b"\x1f\x8b\r\n--X binary");
        assert_eq!(parts[1].name, "sample_type_config");
        assert_eq!(parts[1].data, b"{\"cpu\":{}}");
    }

    #[test]
    fn malformed() {
        for (body, why) in [
            (&b"no delimiter"[..], "no boundary"),
            (
                b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\ndata",
                "closing",
            ),
            (
                b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--",
                "name",
            ),
            (b"--b\r\nno blank line", "empty line"),
            (b"--bjunk", "line end"),
        ] {
            let e = parse(body, "b", 8).unwrap_err();
            assert!(e.contains(why), "{:?}: {e}", String::from_utf8_lossy(body));
        }
        let many = "--b\r\nContent-Disposition: form-data; name=a\r\n\r\nx\r\n".repeat(3) + "--b--";
        assert!(
            parse(many.as_bytes(), "b", 2)
                .unwrap_err()
                .contains("more than 2")
        );
        assert_eq!(parse(many.as_bytes(), "b", 3).unwrap().len(), 3);
    }
}
