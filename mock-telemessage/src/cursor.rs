//! Listing cursors: the window, the listing's snapshot and the last key served, signed
//! with a key of this server so that an altered cursor is refused, not obeyed.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Format version.
    pub v: u8,
    pub since: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// Items with a sequence number below this one belong to the listing.
    pub snapshot: u64,
    /// When the listing began: items visible from a later time are not in it.
    pub as_of: DateTime<Utc>,
    /// The key (`archived_at`, `id`, sequence number) of the last item served.
    pub after: (DateTime<Utc>, String, u64),
    pub page_size: usize,
}

impl Cursor {
    pub fn encode(&self, key: &[u8; 32]) -> String {
        let payload = serde_json::to_vec(self).expect("a cursor always serialises");
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(tag(key, &payload))
        )
    }

    /// `None` for anything this server did not issue, or that was altered.
    pub fn decode(text: &str, key: &[u8; 32]) -> Option<Self> {
        let (payload, sig) = text.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        if sig != tag(key, &payload) {
            return None;
        }
        let cursor: Self = serde_json::from_slice(&payload).ok()?;
        (cursor.v == 2).then_some(cursor)
    }
}

fn tag(key: &[u8; 32], payload: &[u8]) -> [u8; 16] {
    let inner = Sha256::new()
        .chain_update(key)
        .chain_update(payload)
        .finalize();
    let outer = Sha256::new()
        .chain_update(key)
        .chain_update(inner)
        .finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&outer[..16]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Cursor {
        let t = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .to_utc();
        Cursor {
            v: 2,
            since: t,
            until: t + chrono::Duration::days(1),
            snapshot: 17,
            as_of: t + chrono::Duration::days(2),
            after: (t, "wa-1".into(), 3),
            page_size: 10,
        }
    }

    #[test]
    fn round_trips_and_refuses_other_keys_and_edits() {
        let key = [7u8; 32];
        let text = sample().encode(&key);
        assert_eq!(Cursor::decode(&text, &key), Some(sample()));
        assert_eq!(Cursor::decode(&text, &[8u8; 32]), None);
        let (payload, sig) = text.split_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(payload).unwrap();
        let last = raw.len() - 2;
        raw[last] ^= 1;
        let edited = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(raw));
        assert_eq!(Cursor::decode(&edited, &key), None);
        assert_eq!(Cursor::decode("garbage", &key), None);
    }
}
