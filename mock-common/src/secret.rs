//! Secrets handled the way the provider's 2025 breach taught: passwords and client secrets
//! are kept only as argon2 hashes, bearer tokens only as SHA-256 digests, and none of them
//! has a `Debug` that shows the value.

use argon2::Argon2;
use argon2::password_hash::{
    PasswordHash as PhcHash, PasswordHasher, PasswordVerifier, SaltString,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// An argon2id hash of a password or client secret, in PHC string form.
#[derive(Clone)]
pub struct PasswordHash(String);

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordHash(argon2id, redacted)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("not an argon2 PHC hash string")]
    NotPhc,
    #[error("argon2 failed: {0}")]
    Argon2(String),
}

impl PasswordHash {
    /// Hashes a clear password with a fresh random salt. The clear text is not kept.
    pub fn hash(clear: &str) -> Result<Self, HashError> {
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).map_err(|e| HashError::Argon2(e.to_string()))?;
        let salt = SaltString::encode_b64(&raw).map_err(|e| HashError::Argon2(e.to_string()))?;
        Argon2::default()
            .hash_password(clear.as_bytes(), &salt)
            .map(|h| Self(h.to_string()))
            .map_err(|e| HashError::Argon2(e.to_string()))
    }

    /// Takes an existing PHC string (`$argon2id$v=19$...`), checking that it parses.
    pub fn from_phc(phc: &str) -> Result<Self, HashError> {
        let parsed = PhcHash::new(phc).map_err(|_| HashError::NotPhc)?;
        if !parsed.algorithm.as_str().starts_with("argon2") {
            return Err(HashError::NotPhc);
        }
        Ok(Self(phc.to_owned()))
    }

    /// Checks a clear password against the hash, in time that does not depend on where
    /// the two differ.
    pub fn verify(&self, clear: &str) -> bool {
        match PhcHash::new(&self.0) {
            Ok(parsed) => Argon2::default()
                .verify_password(clear.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        }
    }

    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

/// The SHA-256 of a bearer token: what a server keeps instead of the token itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenDigest([u8; 32]);

impl std::fmt::Debug for TokenDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenDigest(redacted)")
    }
}

impl TokenDigest {
    pub fn of(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }
}

/// A fresh opaque token: `prefix` followed by 32 random bytes in URL-safe base64.
pub fn new_token(prefix: &str) -> String {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the operating system has no random source");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(raw))
}

/// A request id for error bodies and the `request-id` headers: 16 random bytes as
/// hyphenated lower-case hex, like a GUID.
pub fn request_id() -> String {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).expect("the operating system has no random source");
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The token that opens a fake's inspection API. Kept as a digest; `None` means the
/// inspection API refuses everyone.
#[derive(Clone, Default)]
pub struct AdminToken(Option<TokenDigest>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "AdminToken(set, redacted)"
        } else {
            "AdminToken(unset)"
        })
    }
}

impl AdminToken {
    pub fn new(token: &str) -> Self {
        Self(Some(TokenDigest::of(token)))
    }

    pub fn disabled() -> Self {
        Self(None)
    }

    /// Whether an admin token is configured at all.
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }

    /// Whether `token` itself (not a header) is the admin token.
    pub fn is(&self, token: &str) -> bool {
        self.0
            .is_some_and(|expected| TokenDigest::of(token) == expected)
    }

    /// Whether an `Authorization` header value (`Bearer <token>`) opens the admin API.
    pub fn admits(&self, authorization: Option<&str>) -> bool {
        authorization.and_then(bearer).is_some_and(|t| self.is(t))
    }
}

/// The token of an `Authorization: Bearer <token>` header value, if it is one.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_hash_verifies_only_the_right_password_and_hides_it() {
        let hash = PasswordHash::hash("correct horse").unwrap();
        assert!(hash.verify("correct horse"));
        assert!(!hash.verify("correct horsE"));
        assert!(hash.as_phc().starts_with("$argon2id$"));
        assert!(!format!("{hash:?}").contains("argon2id$"));
        let again = PasswordHash::from_phc(hash.as_phc()).unwrap();
        assert!(again.verify("correct horse"));
        assert!(PasswordHash::from_phc("5f4dcc3b5aa765d61d8327deb882cf99").is_err());
    }

    #[test]
    fn admin_token_admits_only_its_bearer() {
        let admin = AdminToken::new("s3cret-admin");
        assert!(admin.admits(Some("Bearer s3cret-admin")));
        assert!(admin.admits(Some("bearer s3cret-admin")));
        assert!(!admin.admits(Some("Bearer other")));
        assert!(!admin.admits(Some("Basic s3cret-admin")));
        assert!(!admin.admits(None));
        assert!(!AdminToken::disabled().admits(Some("Bearer s3cret-admin")));
        assert!(!format!("{admin:?}").contains("s3cret"));
    }

    #[test]
    fn tokens_and_request_ids_are_fresh() {
        assert_ne!(new_token("t_"), new_token("t_"));
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_ne!(id, request_id());
    }
}

/// What a bearer token is, at a given moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<T> {
    /// Never issued here (or forgotten a day after it expired).
    Unknown,
    /// Issued, but its lifetime is over.
    Expired,
    Valid(T),
}

/// Issued bearer tokens, kept as digests with their expiry. An expired token is
/// remembered for a day, so that a client is told `expired` rather than `unknown`.
#[derive(Debug)]
pub struct Sessions<T> {
    by_digest: std::sync::Mutex<
        std::collections::HashMap<TokenDigest, (T, chrono::DateTime<chrono::Utc>)>,
    >,
}

impl<T> Default for Sessions<T> {
    fn default() -> Self {
        Self {
            by_digest: std::sync::Mutex::default(),
        }
    }
}

impl<T: Clone> Sessions<T> {
    /// Issues a fresh token carrying `session` until `expires_at`.
    pub fn issue(
        &self,
        prefix: &str,
        session: T,
        expires_at: chrono::DateTime<chrono::Utc>,
    ) -> String {
        let token = new_token(prefix);
        self.by_digest
            .lock()
            .expect("sessions lock poisoned")
            .insert(TokenDigest::of(&token), (session, expires_at));
        token
    }

    /// Forgets a token at once (a logout).
    pub fn revoke(&self, token: &str) {
        self.by_digest
            .lock()
            .expect("sessions lock poisoned")
            .remove(&TokenDigest::of(token));
    }

    pub fn lookup(&self, token: &str, now: chrono::DateTime<chrono::Utc>) -> Lookup<T> {
        let mut sessions = self.by_digest.lock().expect("sessions lock poisoned");
        sessions.retain(|_, (_, expires_at)| now - *expires_at < chrono::Duration::days(1));
        match sessions.get(&TokenDigest::of(token)) {
            None => Lookup::Unknown,
            Some((_, expires_at)) if *expires_at <= now => Lookup::Expired,
            Some((session, _)) => Lookup::Valid(session.clone()),
        }
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;

    #[test]
    fn a_token_is_valid_then_expired_then_forgotten() {
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .to_utc();
        let sessions = Sessions::default();
        let token = sessions.issue("t_", "alice", t0 + chrono::Duration::hours(1));
        assert_eq!(sessions.lookup(&token, t0), Lookup::Valid("alice"));
        assert_eq!(sessions.lookup("t_other", t0), Lookup::Unknown);
        assert_eq!(
            sessions.lookup(&token, t0 + chrono::Duration::hours(1)),
            Lookup::Expired
        );
        assert_eq!(
            sessions.lookup(&token, t0 + chrono::Duration::hours(26)),
            Lookup::Unknown
        );
        assert!(!format!("{sessions:?}").contains(&token));
        let other = sessions.issue("t_", "bob", t0 + chrono::Duration::hours(1));
        sessions.revoke(&other);
        assert_eq!(sessions.lookup(&other, t0), Lookup::Unknown);
    }
}
