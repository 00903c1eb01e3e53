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

#[cfg(test)]
mod tests {
    #[test]
    fn encodes_what_a_path_cannot_carry() {
        assert_eq!(
            super::path_segment("alice@contoso.example"),
            "alice@contoso.example"
        );
        assert_eq!(super::path_segment("att 1/../x?y"), "att%201%2F..%2Fx%3Fy");
    }
}
