//! Phone numbers to E.164 (`+` and 8 to 15 digits, no leading 0), from what mapping files
//! and the provider really contain: spaces, dashes, dots, parentheses, a missing `+`, a
//! leading `00`, surrounding white space, a byte-order mark.

/// Why a phone number could not be normalised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("empty phone number")]
    Empty,
    #[error("{0:?} has a character that is not a digit, space, dash, dot or parenthesis")]
    BadCharacter(String),
    #[error("{0:?} has {1} digits; E.164 numbers have 8 to 15 with the country code")]
    Length(String, usize),
    #[error("{0:?} starts with 0 after the country prefix; give the country code")]
    LeadingZero(String),
}

/// Normalises to `+` followed by digits.
pub fn normalise(raw: &str) -> Result<String, PhoneError> {
    let trimmed = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if trimmed.is_empty() {
        return Err(PhoneError::Empty);
    }
    let (plus, rest) = match trimmed.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, trimmed),
    };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' | '\u{a0}' => {}
            _ => return Err(PhoneError::BadCharacter(raw.to_owned())),
        }
    }
    if !plus && let Some(international) = digits.strip_prefix("00") {
        digits = international.to_owned();
    }
    if digits.starts_with('0') {
        return Err(PhoneError::LeadingZero(raw.to_owned()));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(PhoneError::Length(raw.to_owned(), digits.len()));
    }
    Ok(format!("+{digits}"))
}

/// The digits without `+`, as the provider writes numbers in subjects.
pub fn digits(e164: &str) -> &str {
    e164.strip_prefix('+').unwrap_or(e164)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_what_real_files_contain() {
        for raw in [
            "+16174354634",
            "16174354634",
            "+1 617-435-4634",
            "+1 (617) 435.4634",
            "001 617 435 4634",
            "  +16174354634\t",
            "\u{feff}+16174354634",
        ] {
            assert_eq!(normalise(raw).unwrap(), "+16174354634", "{raw:?}");
        }
        assert_eq!(normalise("+44 7700 900123").unwrap(), "+447700900123");
    }

    #[test]
    fn refuses_what_cannot_be_a_number() {
        assert_eq!(normalise("  ").unwrap_err(), PhoneError::Empty);
        assert!(matches!(
            normalise("+1 617 CALL NOW"),
            Err(PhoneError::BadCharacter(_))
        ));
        assert!(matches!(
            normalise("0612345678"),
            Err(PhoneError::LeadingZero(_))
        ));
        assert!(matches!(
            normalise("+1234567"),
            Err(PhoneError::Length(_, 7))
        ));
        assert!(matches!(
            normalise("+1234567890123456"),
            Err(PhoneError::Length(_, 16))
        ));
        assert!(matches!(
            normalise("++16174354634"),
            Err(PhoneError::BadCharacter(_))
        ));
    }
}
