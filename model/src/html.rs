//! Escaping text for HTML (anomaly annotations and notifications carry HTML links).

/// Escapes `text` for HTML content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            super::escape(r#"vec<T> & "a" 'b'"#),
            "vec&lt;T&gt; &amp; &quot;a&quot; &#39;b&#39;"
        );
    }
}
