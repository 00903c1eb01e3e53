//! Participant → mailbox mapping (S7–S10): the custom mapping file (mobile number →
//! Microsoft 365 address) and the per-participant precedence rule.
//!
//! The rule, per participant: the CSV entry if it names a valid Microsoft 365 user, else
//! (with automatic mapping on) the participant's "User's Email address" property if that
//! is a valid user, else the participant has no mailbox. Validity is decided by the
//! caller (through Graph); everything here is pure.

use std::collections::HashMap;

use crate::phone;

/// The mapping file, read and checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappingFile {
    by_phone: HashMap<String, String>,
    /// Lines kept that a person should look at: a number in no range libphonenumber's
    /// metadata knows as in use (it may be new, or a typing error).
    pub warnings: Vec<LineError>,
}

/// One bad line of a mapping file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    pub line: u64,
    pub reason: String,
}

/// Why a mapping file was refused: every bad line, so they can all be fixed at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {} problem(s):\n{}", .errors.len(), .errors.iter().map(|e| format!("  line {}: {}", e.line, e.reason)).collect::<Vec<_>>().join("\n"))]
pub struct MappingError {
    pub file: String,
    pub errors: Vec<LineError>,
}

/// A plausible email address: one `@`, a local part, a dotted domain, no spaces or
/// control characters.
pub fn is_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && address.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && c != '<' && c != '>' && c != ',' && c != ';'
        })
}

impl MappingFile {
    /// Reads a mapping file. The first row is a header naming a phone column (`phone`,
    /// `mobile`, ...) and an email column (`email`, `mail`, `upn`, ...). The whole file is
    /// refused, with every bad line, if any line is wrong.
    /// Numbers are read with libphonenumber's metadata (`phone::from_mapping_file`); a
    /// national number needs `region`. Spaces around a value are ignored, inside quotes
    /// too (`" alice@contoso.example "` is `alice@contoso.example`).
    pub fn parse(
        file: &str,
        bytes: &[u8],
        region: Option<phonenumber::country::Id>,
    ) -> Result<Self, MappingError> {
        let fail = |errors| MappingError {
            file: file.to_owned(),
            errors,
        };
        let text = String::from_utf8_lossy(bytes);
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        // A quote never closed swallows every line after it: the lines before it are
        // still read, so that their errors are all said at once with this one.
        let (text, unclosed) = match unterminated_quote(text) {
            Some(line) => {
                // Up to the start of the quote's line (nothing, if it is the header's).
                let cut = (line as usize)
                    .checked_sub(2)
                    .and_then(|n| text.match_indices('\n').nth(n))
                    .map_or(0, |(at, _)| at + 1);
                let error = LineError {
                    line,
                    reason: "a quoted value starts on this line and its closing quote is missing (a quote inside a quoted value is written twice: \"\"); the lines after it cannot be read until it is closed".into(),
                };
                (&text[..cut], Some(error))
            }
            None => (text, None),
        };
        let delimiter = delimiter_of(text.lines().next().unwrap_or_default());
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .delimiter(delimiter)
            .from_reader(text.as_bytes());
        let headers = reader.headers().cloned().map_err(|e| {
            fail(vec![LineError {
                line: 1,
                reason: format!("cannot read the header row: {e}"),
            }])
        })?;
        let find = |words: &[&str]| {
            headers.iter().position(|h| {
                let h = h.to_lowercase();
                words.iter().any(|w| h.contains(w))
            })
        };
        let (Some(phone_col), Some(email_col)) = (
            find(&["phone", "mobile", "number", "msisdn"]),
            find(&["email", "mail", "upn", "address", "principal"]),
        ) else {
            if let Some(unclosed) = unclosed {
                return Err(fail(vec![unclosed]));
            }
            return Err(fail(vec![LineError {
                line: 1,
                reason: format!(
                    "the header row must name a phone column and an email column, e.g. `Mobile phone number,Email address` (found: {})",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ),
            }]));
        };
        if phone_col == email_col {
            return Err(fail(vec![LineError {
                line: 1,
                reason: format!(
                    "the header row is one column ({:?}): separate the phone column from the email column with a comma (a semicolon or a tab is read too, when the header row has no comma)",
                    crate::http::clip(&headers.iter().collect::<Vec<_>>().join(""), 80)
                ),
            }]));
        }
        if delimiter != b',' {
            tracing::info!(
                delimiter = %(delimiter as char).escape_default(),
                "mapping file: the header row has no comma; its columns are separated by this character"
            );
        }
        let mut by_phone: HashMap<String, String> = HashMap::new();
        let mut first_line: HashMap<String, u64> = HashMap::new();
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| line_at(text, p.byte()));
                    errors.push(LineError {
                        line,
                        reason: format!("cannot read the line: {e}"),
                    });
                    continue;
                }
            };
            // Counted from the byte offset: the reader's own line count is one short
            // in files with CRLF line ends.
            let line = record.position().map_or(0, |p| line_at(text, p.byte()));
            if record.iter().all(str::is_empty) {
                continue;
            }
            if record.len() != headers.len() {
                errors.push(LineError {
                    line,
                    reason: format!(
                        "{} columns where the header row has {} ({}); quote a value that contains a comma",
                        record.len(),
                        headers.len(),
                        headers.iter().collect::<Vec<_>>().join(", ")
                    ),
                });
                continue;
            }
            let raw_phone = record.get(phone_col).unwrap_or_default();
            let raw_email = record.get(email_col).unwrap_or_default();
            let phone = match phone::from_mapping_file(raw_phone, region) {
                Ok(p) => {
                    if !p.known_range {
                        warnings.push(LineError {
                            line,
                            reason: format!(
                                "{raw_phone:?} reads as {}, which libphonenumber's metadata knows in no range in use; kept, but check it",
                                p.e164
                            ),
                        });
                    }
                    p.e164
                }
                Err(e) => {
                    errors.push(LineError {
                        line,
                        reason: format!("phone: {e}"),
                    });
                    continue;
                }
            };
            if !is_email(raw_email) {
                errors.push(LineError {
                    line,
                    reason: format!("{raw_email:?} is not an email address"),
                });
                continue;
            }
            let email = raw_email.to_lowercase();
            match by_phone.get(&phone) {
                Some(existing) if *existing != email => errors.push(LineError {
                    line,
                    reason: format!(
                        "{phone} is mapped to {existing} on line {} and to {email} here; a number maps to one address",
                        first_line[&phone]
                    ),
                }),
                Some(_) => {}
                None => {
                    first_line.insert(phone.clone(), line);
                    by_phone.insert(phone, email);
                }
            }
        }
        errors.extend(unclosed);
        if errors.is_empty() {
            Ok(Self { by_phone, warnings })
        } else {
            Err(fail(errors))
        }
    }

    /// The address the file gives for a normalised number.
    pub fn address_for(&self, e164: &str) -> Option<&str> {
        self.by_phone.get(e164).map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.by_phone.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_phone.is_empty()
    }
}

/// The line (from 1) of the record that starts at byte `offset` of `text`. With CRLF
/// line ends the reader's offset can point at the end of the line before (the `\n` of
/// its `\r\n`): line ends at the offset belong to the line before.
fn line_at(text: &str, offset: u64) -> u64 {
    let bytes = text.as_bytes();
    let mut end = (offset as usize).min(bytes.len());
    while end < bytes.len() && matches!(bytes[end], b'\r' | b'\n') {
        end += 1;
    }
    bytes[..end].iter().filter(|&&b| b == b'\n').count() as u64 + 1
}

/// The line on which a quoted CSV value opens and never closes, if any. A quote opens a
/// quoted value only at the start of a field (after spaces); inside one, `""` is a quote.
/// The character that separates the columns: a comma, or, in a header row without one, a
/// semicolon or a tab (what spreadsheets write where the comma is the decimal mark).
fn delimiter_of(header: &str) -> u8 {
    if header.contains(',') {
        b','
    } else if header.contains(';') {
        b';'
    } else if header.contains('\t') {
        b'\t'
    } else {
        b','
    }
}

fn unterminated_quote(text: &str) -> Option<u64> {
    let mut line = 1u64;
    let mut opened_at: Option<u64> = None;
    let mut field_start = true;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            line += 1;
        }
        match opened_at {
            Some(_) if c == '"' => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                } else {
                    opened_at = None;
                }
            }
            Some(_) => {}
            None if c == '"' && field_start => opened_at = Some(line),
            None => field_start = matches!(c, ',' | '\n' | '\r') || (field_start && c == ' '),
        }
    }
    opened_at
}

/// Where one participant's copy goes, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// The mapping file's address is a valid user.
    Csv(String),
    /// The participant's email property is a valid user.
    EmailProperty(String),
    /// No valid user: this participant gets no copy.
    None,
}

impl Resolution {
    pub fn address(&self) -> Option<&str> {
        match self {
            Self::Csv(a) | Self::EmailProperty(a) => Some(a),
            Self::None => None,
        }
    }
}

/// The candidates to check for one participant, in the order the rule tries them.
pub fn candidates(
    phone_e164: Option<&str>,
    user_email: Option<&str>,
    csv: Option<&MappingFile>,
    automatic: bool,
) -> Vec<(bool, String)> {
    let mut out = Vec::new();
    if let (Some(file), Some(phone)) = (csv, phone_e164)
        && let Some(address) = file.address_for(phone)
    {
        out.push((true, address.to_owned()));
    }
    if automatic && let Some(email) = user_email.map(str::trim).filter(|e| is_email(e)) {
        out.push((false, email.to_lowercase()));
    }
    out
}

/// Applies the rule to one participant. `look_up` says whether an address is a valid
/// Microsoft 365 user with a mailbox, answering what it found (the connector asks Graph;
/// tests answer from a table): the rule itself does no I/O. Answers where the copy goes
/// and why, with what `look_up` found there.
pub async fn resolve<T, E, Fut>(
    phone_e164: Option<&str>,
    user_email: Option<&str>,
    csv: Option<&MappingFile>,
    automatic: bool,
    // An owned address rather than an async closure over `&str`: the run's futures must
    // stay `Send`, which async closures borrowing their argument cannot yet promise.
    mut look_up: impl FnMut(String) -> Fut,
) -> Result<(Resolution, Option<T>), E>
where
    Fut: std::future::Future<Output = Result<Option<T>, E>>,
{
    for (from_csv, address) in candidates(phone_e164, user_email, csv, automatic) {
        if let Some(found) = look_up(address.clone()).await? {
            let resolution = if from_csv {
                Resolution::Csv(address)
            } else {
                Resolution::EmailProperty(address)
            };
            return Ok((resolution, Some(found)));
        }
    }
    Ok((Resolution::None, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<MappingFile, MappingError> {
        MappingFile::parse("mapping.csv", text.as_bytes(), None)
    }

    #[test]
    fn reads_what_real_files_contain() {
        let f = file("\u{feff}Mobile phone number,Email address\r\n\"+1 (617) 435-4634\", Alice.Archer@Contoso.example \r\n0044 7700 900123,d.ivanov@contoso.example\r\n\r\n16174354634,alice.archer@contoso.example\r\n").unwrap();
        assert_eq!(
            f.address_for("+16174354634"),
            Some("alice.archer@contoso.example")
        );
        assert_eq!(
            f.address_for("+447700900123"),
            Some("d.ivanov@contoso.example")
        );
        assert_eq!(f.len(), 2, "a repeated identical line is fine");
    }

    #[test]
    fn line_numbers_are_right_with_crlf_line_ends_and_quoted_spaces_are_trimmed() {
        let text = "Mobile,Email\r\n+16174354634,alice@contoso.example\r\nnot a number,bob@contoso.example\r\n\r\n+33 6 12 34 56 78,\" Chloe@Contoso.example \"\r\n+1 212,x@contoso.example\r\n";
        let err = file(text).unwrap_err();
        let lines: Vec<u64> = err.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 6], "{err}");
        let ok =
            file("Mobile,Email\r\n\"+33 6 12 34 56 78\",\" Chloe@Contoso.example \"\r\n").unwrap();
        assert_eq!(
            ok.address_for("+33612345678"),
            Some("chloe@contoso.example"),
            "spaces inside quotes are trimmed like any other"
        );
    }

    #[test]
    fn national_numbers_need_the_files_region() {
        let text = "Mobile,Email\n020 7946 0958,alice@contoso.example\n+44 (0)20 7946 0959,bob@contoso.example\n";
        let err = file(text).unwrap_err();
        assert_eq!(err.errors.len(), 1);
        assert_eq!(err.errors[0].line, 2);
        assert!(
            err.errors[0].reason.contains("mapping.default_region"),
            "{err}"
        );
        let f = MappingFile::parse("m.csv", text.as_bytes(), Some(phonenumber::country::Id::GB))
            .unwrap();
        assert_eq!(
            f.address_for("+442079460958"),
            Some("alice@contoso.example")
        );
        assert_eq!(f.address_for("+442079460959"), Some("bob@contoso.example"));
    }

    #[test]
    fn every_bad_line_is_named() {
        let err = file("phone,email\n+16174354634,alice@contoso.example\nnot a number,bob@contoso.example\n+447700900123,not-an-address\n+1 617 435 4634,someone.else@contoso.example\n0612345678,x@contoso.example\n").unwrap_err();
        let lines: Vec<u64> = err.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        let text = err.to_string();
        assert!(text.starts_with("mapping.csv: 4 problem(s)"), "{text}");
        assert!(
            text.contains("line 5: +16174354634 is mapped to alice@contoso.example on line 2"),
            "{text}"
        );
        let header = file("name,department\nAlice,Sales\n").unwrap_err();
        assert_eq!(header.errors[0].line, 1);
    }

    /// The precedence table: CSV entry (valid / not a user / none) × email property
    /// (valid / not a user / absent), with automatic mapping on.
    #[test]
    fn a_semicolon_or_tab_file_is_read_and_one_column_is_named_as_such() {
        for sep in [";", "\t"] {
            let text = format!(
                "Mobile phone number{sep}Email address\n+16174354634{sep}alice@contoso.example\n"
            );
            let file = MappingFile::parse("m.csv", text.as_bytes(), None).unwrap();
            assert_eq!(
                file.address_for("+16174354634"),
                Some("alice@contoso.example"),
                "{sep:?}"
            );
        }
        let err = MappingFile::parse(
            "m.csv",
            b"Mobile phone number|Email address\n+16174354634|alice@contoso.example\n",
            None,
        )
        .unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        assert!(
            err.errors[0]
                .reason
                .contains("the header row is one column"),
            "{err}"
        );
    }

    #[test]
    fn a_quote_never_closed_does_not_hide_the_bad_lines_before_it() {
        let text = "Mobile phone number,Email address\n+16174354634,not-an-address\n+12124325249,bob@contoso.example\n\"+33612345678,chloe@contoso.example\n+447700900123,dan@contoso.example\n";
        let err = MappingFile::parse("m.csv", text.as_bytes(), None).unwrap_err();
        let lines: Vec<u64> = err.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [2, 4], "{err}");
        assert!(err.errors[1].reason.contains("closing quote is missing"));
        // On the header row itself: that one error.
        let err = MappingFile::parse("m.csv", b"\"Mobile,Email\n1,a@b.c\n", None).unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        assert_eq!(err.errors[0].line, 1);
    }

    #[test]
    fn wrong_column_counts_and_unterminated_quotes_are_numbered_errors() {
        let err =
            file("Mobile,Email\n+16174354634,alice@contoso.example,extra,more\n").unwrap_err();
        assert_eq!(err.errors.len(), 1, "{err}");
        assert_eq!(err.errors[0].line, 2);
        assert!(
            err.errors[0]
                .reason
                .starts_with("4 columns where the header row has 2"),
            "{err}"
        );
        let err = file("Mobile,Email\n+16174354634,alice@contoso.example\n\"+12124325249,bob@contoso.example\n+447700900123,d@contoso.example\n")
            .unwrap_err();
        assert_eq!(err.errors[0].line, 3, "{err}");
        assert!(
            err.errors[0].reason.contains("closing quote is missing"),
            "{err}"
        );
        // Quotes that close, with a doubled quote inside, are fine.
        assert!(unterminated_quote("a,\"b \"\"x\"\", c\"\n").is_none());
        assert_eq!(unterminated_quote("a,\"b \"\" c\n"), Some(1));
    }

    /// The rule with a validity table instead of Graph.
    fn resolve_with(
        phone: Option<&str>,
        prop: Option<&str>,
        csv: Option<&MappingFile>,
        automatic: bool,
        valid: impl Fn(&str) -> bool,
    ) -> Resolution {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(resolve(phone, prop, csv, automatic, |a: String| {
            let found = valid(&a).then_some(());
            async move { Ok::<_, ()>(found) }
        }))
        .unwrap()
        .0
    }

    #[test]
    fn precedence_table() {
        let csv = file("phone,email\n+16174354634,csv-valid@contoso.example\n+16174354635,csv-nonuser@contoso.example\n").unwrap();
        let valid =
            |a: &str| a.ends_with("-valid@contoso.example") || a == "prop-valid@contoso.example";
        let valid_prop = Some("prop-valid@contoso.example");
        let bad_prop = Some("prop-nonuser@contoso.example");
        let csv_valid = Some("+16174354634");
        let csv_bad = Some("+16174354635");
        let no_csv = Some("+16174354636");
        let table = [
            (
                csv_valid,
                valid_prop,
                Resolution::Csv("csv-valid@contoso.example".into()),
            ),
            (
                csv_valid,
                bad_prop,
                Resolution::Csv("csv-valid@contoso.example".into()),
            ),
            (
                csv_valid,
                None,
                Resolution::Csv("csv-valid@contoso.example".into()),
            ),
            (
                csv_bad,
                valid_prop,
                Resolution::EmailProperty("prop-valid@contoso.example".into()),
            ),
            (csv_bad, bad_prop, Resolution::None),
            (csv_bad, None, Resolution::None),
            (
                no_csv,
                valid_prop,
                Resolution::EmailProperty("prop-valid@contoso.example".into()),
            ),
            (no_csv, bad_prop, Resolution::None),
            (no_csv, None, Resolution::None),
        ];
        for (phone, prop, expected) in table {
            assert_eq!(
                resolve_with(phone, prop, Some(&csv), true, valid),
                expected,
                "{phone:?} {prop:?}"
            );
        }
        // Automatic mapping off: only the CSV counts.
        assert_eq!(
            resolve_with(csv_bad, valid_prop, Some(&csv), false, valid),
            Resolution::None
        );
        // No CSV at all: only the property counts.
        assert_eq!(
            resolve_with(csv_valid, valid_prop, None, true, valid),
            Resolution::EmailProperty("prop-valid@contoso.example".into())
        );
    }

    #[test]
    fn email_check() {
        assert!(is_email("a.b@contoso.example"));
        for bad in [
            "",
            "a",
            "a@b",
            "@b.c",
            "a@.b",
            "a@b.",
            "a b@c.d",
            "a@b@c.d",
            "a@b..c",
            "<a@b.c>",
            "a@b.c\r\nBcc: x@y.z",
        ] {
            assert!(!is_email(bad), "{bad:?}");
        }
    }
}
