//! A secret value (password, client secret, token) whose `Debug` and `Display` never
//! show it.

/// Holds a secret; read it only where it is sent.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl Secret {
    /// An argon2id hash of the value with a fresh salt (PHC string), for remembering a
    /// refused secret without keeping it. `None` only if the system has no randomness.
    pub fn digest(&self) -> Option<String> {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let mut raw = [0u8; 16];
        getrandom::fill(&mut raw).ok()?;
        let salt = SaltString::encode_b64(&raw).ok()?;
        argon2::Argon2::default()
            .hash_password(self.0.as_bytes(), &salt)
            .ok()
            .map(|h| h.to_string())
    }

    /// Whether this value is the one `digest` was made from.
    pub fn matches(&self, digest: &str) -> bool {
        use argon2::password_hash::{PasswordHash, PasswordVerifier};
        PasswordHash::new(digest).is_ok_and(|parsed| {
            argon2::Argon2::default()
                .verify_password(self.0.as_bytes(), &parsed)
                .is_ok()
        })
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn debug_hides_the_value() {
        let s = super::Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn a_digest_recognises_its_secret_and_does_not_contain_it() {
        let s = super::Secret::new("hunter2");
        let digest = s.digest().unwrap();
        assert!(digest.starts_with("$argon2id$"), "{digest}");
        assert!(!digest.contains("hunter2"));
        assert!(s.matches(&digest));
        assert!(!super::Secret::new("hunter3").matches(&digest));
        assert!(!s.matches("not a digest"));
    }
}
