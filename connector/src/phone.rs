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
    #[error(
        "{0:?} is a national number (no country code); write it with its country code (+44 ...) or set mapping.default_region"
    )]
    National(String),
    #[error("{0:?} cannot be read as a phone number: {1}")]
    Unreadable(String, String),
    #[error(
        "{0:?} reads as {1}, a length no number of that country has (libphonenumber's metadata)"
    )]
    ImpossibleLength(String, String),
}

/// A mapping-file number in E.164, and whether libphonenumber's metadata knows its range
/// as in use (a number of a possible length in a range not (yet) in the metadata is kept,
/// and said).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedNumber {
    pub e164: String,
    pub known_range: bool,
}

/// A number from a mapping file, as people write them, to E.164, with libphonenumber's
/// metadata: `+44 (0)20 7946 0958` (a trunk prefix in parentheses) and `0044 20 7946
/// 0958` are `+442079460958`; a national number such as `020 7946 0958` needs the
/// file's region (`region`, ISO 3166 code), and digits with neither `+` nor `00` nor a
/// region are read as international, as before. A number that cannot exist (no such
/// country code, a length or range its country does not use) is refused.
pub fn from_mapping_file(
    raw: &str,
    region: Option<phonenumber::country::Id>,
) -> Result<MappedNumber, PhoneError> {
    let trimmed = raw.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
    if trimmed.is_empty() {
        return Err(PhoneError::Empty);
    }
    if trimmed
        .chars()
        .any(|c| !(c.is_ascii_digit() || " -.()+\u{a0}/".contains(c)))
    {
        return Err(PhoneError::BadCharacter(raw.to_owned()));
    }
    let international = |rest: &str| format!("+{rest}");
    let (text, region) = if trimmed.starts_with('+') {
        (trimmed.to_owned(), None)
    } else if let Some(rest) = trimmed.strip_prefix("00") {
        (international(rest), None)
    } else if region.is_some() {
        (trimmed.to_owned(), region)
    } else if trimmed.starts_with('0') {
        return Err(PhoneError::National(raw.to_owned()));
    } else {
        (international(trimmed), None)
    };
    let number = phonenumber::parse(region, &text)
        .map_err(|e| PhoneError::Unreadable(raw.to_owned(), e.to_string()))?;
    let e164 = number.format().mode(phonenumber::Mode::E164).to_string();
    // The lengths any region sharing the calling code gives its numbers.
    let regions = phonenumber::metadata::DATABASE
        .by_code(&number.code().value())
        .unwrap_or_default();
    if regions.is_empty() {
        return Err(PhoneError::Unreadable(
            raw.to_owned(),
            "no country has that calling code".into(),
        ));
    }
    let national = (e164.len() - 1 - number.code().value().to_string().len()) as u16;
    // A region gives lengths for its whole plan, or only per kind of number.
    let known: Vec<u16> = regions
        .iter()
        .flat_map(|meta| {
            let d = meta.descriptors();
            std::iter::once(Some(d.general()))
                .chain([
                    d.fixed_line(),
                    d.mobile(),
                    d.toll_free(),
                    d.premium_rate(),
                    d.shared_cost(),
                    d.personal_number(),
                    d.voip(),
                    d.pager(),
                    d.uan(),
                    d.voicemail(),
                ])
                .flatten()
                .flat_map(|desc| desc.possible_length().iter().copied())
                .collect::<Vec<u16>>()
        })
        .collect();
    let possible = known.is_empty() || known.contains(&national);
    if !possible {
        return Err(PhoneError::ImpossibleLength(raw.to_owned(), e164));
    }
    if !(8..=16).contains(&e164.len()) {
        return Err(PhoneError::Length(raw.to_owned(), e164.len() - 1));
    }
    Ok(MappedNumber {
        known_range: phonenumber::is_valid(&number),
        e164,
    })
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
    fn mapping_files_are_read_with_the_fields_library() {
        use phonenumber::country::Id;
        for (raw, region, e164) in [
            ("+44 (0)20 7946 0958", None, "+442079460958"),
            ("0044 20 7946 0958", None, "+442079460958"),
            ("020 7946 0958", Some(Id::GB), "+442079460958"),
            ("+33 (0)6 12 34 56 78", None, "+33612345678"),
            ("06 12 34 56 78", Some(Id::FR), "+33612345678"),
            ("(617) 435-4634", Some(Id::US), "+16174354634"),
            ("16174354634", None, "+16174354634"),
            ("\u{feff} +1 617 435 4634 ", None, "+16174354634"),
            ("+1 617 435 4634", Some(Id::GB), "+16174354634"),
        ] {
            assert_eq!(
                from_mapping_file(raw, region).map(|n| n.e164),
                Ok(e164.to_owned()),
                "{raw:?} in {region:?}"
            );
        }
        // The hand-written reading made +4402079460958 of this, which matches nobody.
        assert_ne!(normalise("+44 (0)20 7946 0958").unwrap(), "+442079460958");
        // Ofcom keeps 07700 900xxx for drama: a possible length, in no range in use.
        assert!(
            !from_mapping_file("+44 7700 900123", None)
                .unwrap()
                .known_range
        );
        assert!(
            from_mapping_file("+44 20 7946 0958", None)
                .unwrap()
                .known_range
        );
        // One digit short: a length some UK numbers have, in no range in use: kept, said.
        assert!(
            !from_mapping_file("+44 20 7946 095", None)
                .unwrap()
                .known_range
        );
        for (raw, region) in [
            ("020 7946 0958", None),
            ("+999 1234 5678", None),
            ("+44 20 79", None),
            ("+1 617 435 46341", None),
            ("+1 617 CALL NOW", None),
            ("", None),
        ] {
            assert!(
                from_mapping_file(raw, region).is_err(),
                "{raw:?} must be refused"
            );
        }
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
