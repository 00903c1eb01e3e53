//! The KQL subset `$search` understands on messages (documented in docs/mailbox-api.md).
//!
//! The query is a double-quoted string. Inside it, terms separated by spaces must all
//! match (an explicit `AND` is allowed); `OR` between terms makes alternatives. A term is
//! a bare word, matched case-insensitively against sender, subject and body; or
//! `property:value` with property `from`, `to`, `cc`, `participants`, `subject`, `body`,
//! `hasAttachment(s)` (`true`/`false`); or `received` with `=`, `>=`, `<=`, `>`, `<` and a
//! date (`2026-11-22`) or time (`2026-11-22T09:00:00Z`). An unknown property is matched
//! as a bare word, as KQL does.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use crate::error::GraphError;
use crate::message::{Mailbox, StoredMessage, Summary};
use crate::store::ReadError;

#[derive(Debug, Clone, PartialEq)]
enum Term {
    Free(String),
    Field(Field, String),
    HasAttachment(bool),
    Received(Cmp, DateTime<Utc>, Option<DateTime<Utc>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    From,
    To,
    Cc,
    Participants,
    Subject,
    Body,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Eq,
    Ge,
    Le,
    Gt,
    Lt,
}

/// A parsed search: alternatives, each a list of terms that must all match.
#[derive(Debug, Clone, PartialEq)]
pub struct Search(Vec<Vec<Term>>);

impl Search {
    pub fn parse(raw: &str) -> Result<Self, GraphError> {
        let inner = raw
            .trim()
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .ok_or_else(|| {
                GraphError::bad_request(
                    "Syntax error: the $search value must be enclosed in double quotes.",
                )
            })?;
        let mut groups = vec![Vec::new()];
        for word in inner.split_whitespace() {
            match word {
                "AND" => {}
                "OR" => groups.push(Vec::new()),
                _ => groups
                    .last_mut()
                    .expect("never empty")
                    .push(Term::parse(word)?),
            }
        }
        groups.retain(|g| !g.is_empty());
        Ok(Self(groups))
    }

    /// Whether a message matches; its summary is read from the store at most once, and
    /// only if a term needs it.
    pub fn matches(&self, message: &StoredMessage) -> Result<bool, ReadError> {
        let mut summary = None;
        for group in &self.0 {
            let mut all = true;
            for term in group {
                if !term.matches(message, &mut summary)? {
                    all = false;
                    break;
                }
            }
            if all {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

impl Term {
    fn parse(word: &str) -> Result<Self, GraphError> {
        let lower = word.to_lowercase();
        for (op, cmp) in [
            (">=", Cmp::Ge),
            ("<=", Cmp::Le),
            (">", Cmp::Gt),
            ("<", Cmp::Lt),
            ("=", Cmp::Eq),
            (":", Cmp::Eq),
        ] {
            if let Some(value) = lower
                .strip_prefix("received")
                .and_then(|r| r.strip_prefix(op))
            {
                return received(cmp, value);
            }
        }
        let Some((property, value)) = word.split_once(':') else {
            return Ok(Self::Free(lower));
        };
        let value = value.trim_matches('\'').to_lowercase();
        let field = match property.to_lowercase().as_str() {
            "from" => Field::From,
            "to" => Field::To,
            "cc" => Field::Cc,
            "participants" => Field::Participants,
            "subject" => Field::Subject,
            "body" => Field::Body,
            "hasattachment" | "hasattachments" => {
                return match value.as_str() {
                    "true" => Ok(Self::HasAttachment(true)),
                    "false" => Ok(Self::HasAttachment(false)),
                    _ => Err(GraphError::bad_request(format!(
                        "Syntax error: hasAttachment takes true or false, not '{value}'."
                    ))),
                };
            }
            _ => return Ok(Self::Free(lower)),
        };
        Ok(Self::Field(field, value))
    }

    fn matches(&self, m: &StoredMessage, summary: &mut Option<Summary>) -> Result<bool, ReadError> {
        let (field, v) = match self {
            // The date and the attachments are in memory.
            Self::HasAttachment(want) => return Ok(m.content.has_attachments() == *want),
            Self::Received(cmp, start, day_end) => {
                return Ok(received_in(m.received(), *cmp, *start, *day_end));
            }
            Self::Free(v) => (None, v),
            Self::Field(field, v) => (Some(*field), v),
        };
        let s = match summary {
            Some(s) => s,
            None => summary.insert(m.content.summary()?),
        };
        let people = |list: &[Mailbox]| {
            list.iter()
                .any(|p| p.name.to_lowercase().contains(v) || p.address.to_lowercase().contains(v))
        };
        let from: Vec<Mailbox> = s.from.iter().cloned().collect();
        Ok(match field {
            None => {
                people(&from)
                    || s.subject.to_lowercase().contains(v)
                    || s.body_text.to_lowercase().contains(v)
            }
            Some(Field::From) => people(&from),
            Some(Field::To) => people(&s.to),
            Some(Field::Cc) => people(&s.cc),
            Some(Field::Participants) => {
                people(&from) || people(&s.to) || people(&s.cc) || people(&s.bcc)
            }
            Some(Field::Subject) => s.subject.to_lowercase().contains(v),
            Some(Field::Body) => s.body_text.to_lowercase().contains(v),
        })
    }
}

/// Whether a message received `at` is in the range a `received` term gives.
fn received_in(
    at: DateTime<Utc>,
    cmp: Cmp,
    start: DateTime<Utc>,
    day_end: Option<DateTime<Utc>>,
) -> bool {
    match (cmp, day_end) {
        // A date stands for the whole day [start, day_end).
        (Cmp::Eq, Some(end)) => at >= start && at < end,
        (Cmp::Ge, _) => at >= start,
        (Cmp::Gt, Some(end)) => at >= end,
        (Cmp::Le, Some(end)) => at < end,
        (Cmp::Lt, _) => at < start,
        // A time is an instant.
        (Cmp::Eq, None) => at == start,
        (Cmp::Gt, None) => at > start,
        (Cmp::Le, None) => at <= start,
    }
}

fn received(cmp: Cmp, value: &str) -> Result<Term, GraphError> {
    if let Ok(date) = NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        let start = date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc();
        return Ok(Term::Received(cmp, start, Some(start + Duration::days(1))));
    }
    DateTime::parse_from_rfc3339(&value.to_uppercase())
        .map(|t| Term::Received(cmp, t.to_utc(), None))
        .map_err(|_| {
            GraphError::bad_request(format!("Syntax error: '{value}' is not a date or time."))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_groups_and_terms() {
        let s = Search::parse("\"from:alice subject:quote OR hasAttachment:true\"").unwrap();
        assert_eq!(s.0.len(), 2);
        assert_eq!(s.0[0][0], Term::Field(Field::From, "alice".into()));
        assert_eq!(s.0[1][0], Term::HasAttachment(true));
        assert!(Search::parse("from:alice").is_err(), "quotes are required");
        assert!(Search::parse("\"received>=yesterday\"").is_err());
        assert!(Search::parse("\"hasAttachment:maybe\"").is_err());
    }
}
