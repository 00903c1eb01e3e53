//! The 10 MB rule of the seed (S11), as mission.md settles it: 10 MiB = 10,485,760 bytes,
//! and exactly that many bytes passes.

/// The default limit, in bytes.
pub const DEFAULT_LIMIT: u64 = 10 * 1024 * 1024;

/// Whether an attachment of `size` bytes may be imported.
pub fn attachment_fits(size: u64, limit: u64) -> bool {
    size <= limit
}

/// Whether a whole message of `len` RFC 5322 bytes may be imported.
pub fn message_fits(len: usize, limit: u64) -> bool {
    len as u64 <= limit
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
}
