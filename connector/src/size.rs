//! The 10 MB rule (S11), as docs/rules.md settles it: 10 MiB = 10,485,760 bytes,
//! and exactly that many bytes passes.

/// The default limit, in bytes.
pub const DEFAULT_LIMIT: u64 = 10 * 1024 * 1024;

/// The largest Graph request body by default: the 4 MB Microsoft documents for MIME
/// payloads and upload chunks, read as 4 MiB. The `importMime` page names no limit.
pub const DEFAULT_MAX_REQUEST: u64 = 4 * 1024 * 1024;
/// The smallest request cap the configuration takes.
pub const MIN_MAX_REQUEST: u64 = 64 * 1024;
/// A file attached by one `POST .../attachments` must be under 3 MB (read as 3 MiB);
/// a larger one goes by an upload session.
pub const SINGLE_POST_FILE: u64 = 3 * 1024 * 1024;
/// Each chunk of an upload session carries at most 4 MB (read as 4 MiB).
pub const MAX_CHUNK: u64 = 4 * 1024 * 1024;

/// The length of `n` bytes as standard base64 (no line breaks): what an import body or
/// a JSON `contentBytes` of them takes.
pub fn base64_len(n: u64) -> u64 {
    n.div_ceil(3) * 4
}

/// Whether an attachment of `size` bytes may be imported.
pub fn attachment_fits(size: u64, limit: u64) -> bool {
    size <= limit
}

/// Whether a whole message of `len` RFC 5322 bytes may be imported.
pub fn message_fits(len: usize, limit: u64) -> bool {
    len as u64 <= limit
}

/// The bytes `n` bytes of attachment take in a message as base64: lines of 76
/// characters (57 bytes each) ending in CRLF, as the message builder writes them.
pub fn base64_mime_len(n: u64) -> u64 {
    let (lines, rest) = (n / 57, n % 57);
    lines * 78
        + if rest > 0 {
            rest.div_ceil(3) * 4 + 2
        } else {
            0
        }
}

/// The fewest bytes an attachment of `size` bytes can take in a message: exactly its
/// base64 length for a binary part; for a text part (which may be sent as it is) its own
/// size.
pub fn least_encoded_len(size: u64, text_part: bool) -> u64 {
    if text_part {
        size
    } else {
        base64_mime_len(size)
    }
}

/// Whether an attachment can be carried, decided before it is downloaded: `frame` is the
/// length of the message with the attachment's part present but empty.
pub fn attachment_can_fit(frame: usize, size: u64, text_part: bool, limit: u64) -> bool {
    (frame as u64).saturating_add(least_encoded_len(size, text_part)) <= limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_boundary_is_inclusive() {
        assert_eq!(DEFAULT_LIMIT, 10_485_760);
        assert!(attachment_fits(10_485_759, DEFAULT_LIMIT));
        assert!(attachment_fits(10_485_760, DEFAULT_LIMIT));
        assert!(!attachment_fits(10_485_761, DEFAULT_LIMIT));
        assert!(message_fits(10_485_759, DEFAULT_LIMIT));
        assert!(message_fits(10_485_760, DEFAULT_LIMIT));
        assert!(!message_fits(10_485_761, DEFAULT_LIMIT));
    }

    #[test]
    fn base64_lengths_follow_the_line_rule() {
        assert_eq!(base64_mime_len(0), 0);
        assert_eq!(base64_mime_len(1), 6);
        assert_eq!(base64_mime_len(57), 78);
        assert_eq!(base64_mime_len(58), 84);
        // From about 7.6 MiB up, a file fits the limit on its own but not as base64.
        assert!(attachment_fits(7_900_000, DEFAULT_LIMIT));
        assert!(!attachment_can_fit(2_000, 7_900_000, false, DEFAULT_LIMIT));
        assert!(attachment_can_fit(2_000, 7_600_000, false, DEFAULT_LIMIT));
        // A text part may go as it is: only its own size is sure.
        assert!(attachment_can_fit(2_000, 7_900_000, true, DEFAULT_LIMIT));
    }
}
