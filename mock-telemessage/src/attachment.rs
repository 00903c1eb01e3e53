//! Attachment bytes, made on demand from a seed: a 50 MB attachment costs nothing in a
//! dataset and its SHA-256 is the same on every machine. The stream is SplitMix64 of the
//! seed, each output word written little-endian, cut at `size` bytes.

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// How much of an attachment one chunk of a download carries.
pub const CHUNK: usize = 64 * 1024;

/// A deterministic generator of attachment bytes.
#[derive(Debug, Clone)]
pub struct ByteStream {
    state: u64,
    remaining: u64,
}

impl ByteStream {
    pub fn new(seed: u64, size: u64) -> Self {
        Self {
            state: seed,
            remaining: size,
        }
    }

    /// The next chunk of at most [`CHUNK`] bytes, or `None` at the end.
    pub fn next_chunk(&mut self) -> Option<Bytes> {
        if self.remaining == 0 {
            return None;
        }
        let len = usize::try_from(self.remaining.min(CHUNK as u64)).unwrap_or(CHUNK);
        let mut buf = Vec::with_capacity(len + 8);
        while buf.len() < len {
            buf.extend_from_slice(&mock_common::seeded::splitmix64(&mut self.state).to_le_bytes());
        }
        buf.truncate(len);
        self.remaining -= len as u64;
        Some(Bytes::from(buf))
    }
}

/// The bytes of the attachment generated from `seed` and `size`, whole.
pub fn bytes(seed: u64, size: u64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    let mut stream = ByteStream::new(seed, size);
    while let Some(chunk) = stream.next_chunk() {
        bytes.extend_from_slice(&chunk);
    }
    bytes
}

/// The lower-case hex SHA-256 of the attachment generated from `seed` and `size`.
pub fn sha256_hex(seed: u64, size: u64) -> String {
    let mut hasher = Sha256::new();
    let mut stream = ByteStream::new(seed, size);
    while let Some(chunk) = stream.next_chunk() {
        hasher.update(&chunk);
    }
    hex(&hasher.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A file name safe for an ASCII `Content-Disposition` header.
pub fn ascii_file_name(name: &str) -> String {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !safe.chars().any(|c| c.is_ascii_alphanumeric()) {
        "attachment".to_owned()
    } else {
        safe
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_deterministic_and_exactly_sized() {
        let collect = |seed, size| {
            let mut s = ByteStream::new(seed, size);
            let mut all = Vec::new();
            while let Some(c) = s.next_chunk() {
                assert!(c.len() <= CHUNK);
                all.extend_from_slice(&c);
            }
            all
        };
        for size in [0u64, 1, 7, 8, 9, 65_535, 65_536, 65_537, 200_001] {
            let a = collect(42, size);
            assert_eq!(a.len() as u64, size);
            assert_eq!(a, collect(42, size));
        }
        assert_ne!(collect(1, 64), collect(2, 64));
        assert_eq!(
            sha256_hex(42, 200_001),
            hex(&Sha256::digest(collect(42, 200_001)))
        );
        assert_eq!(
            sha256_hex(0, 0),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn content_disposition_names_cannot_break_the_header() {
        assert_eq!(ascii_file_name("Term sheet v3.pdf"), "Term sheet v3.pdf");
        assert_eq!(ascii_file_name("a\"b\r\nc.pdf"), "a_b__c.pdf");
        assert_eq!(ascii_file_name("Überweisung.pdf"), "_berweisung.pdf");
        assert_eq!(ascii_file_name("\u{202e}"), "attachment");
    }
}
