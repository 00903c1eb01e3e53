//! Small pieces of HTTP both clients need.

/// A URL path segment, percent-encoded: unreserved characters and `@` (which Graph
/// accepts in user principal names) stay as they are.
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// What went wrong with a request, for a person: the error and its causes, each said
/// once, without the URL (which may carry a cursor or an id the log does not need).
pub fn describe(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let top = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "could not connect".to_owned()
    } else if e.is_builder() {
        "the request could not be built".to_owned()
    } else if e.is_body() || e.is_decode() {
        "the answer's body could not be read".to_owned()
    } else {
        "the request failed".to_owned()
    };
    parts.push(top);
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !text.is_empty()
            && !parts
                .iter()
                .any(|p| p.contains(&text) || text.contains(p.as_str()))
        {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// At most `max` characters of text a service sent (a page that is not what its API
/// promises), for an error message: control characters shown as spaces, the rest cut
/// with its length said. A person reads it; a log shipper never sees a raw line break.
pub fn clip(text: &str, max: usize) -> String {
    let shown: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let total = text.chars().count();
    if total > max {
        format!("{shown}...({total} characters)")
    } else {
        shown
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn clipped_text_is_short_and_on_one_line() {
        assert_eq!(super::clip("a\r\nb", 10), "a  b");
        assert_eq!(super::clip("<html>é…", 3), "<ht...(8 characters)");
    }

    #[test]
    fn encodes_what_a_path_cannot_carry() {
        assert_eq!(
            super::path_segment("alice@contoso.example"),
            "alice@contoso.example"
        );
        assert_eq!(super::path_segment("att 1/../x?y"), "att%201%2F..%2Fx%3Fy");
    }
}
