//! The OData query options the fake understands: `$top`, `$skip`, `$select`, `$filter`
//! (one `property eq 'value'` clause, quotes doubled inside) and `$search`.

use std::collections::HashMap;

use crate::error::GraphError;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Query {
    pub top: Option<usize>,
    pub skip: usize,
    pub select: Option<Vec<String>>,
    pub filter: Option<Filter>,
    pub search: Option<String>,
}

/// `property eq 'value'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub property: String,
    pub value: String,
}

impl Query {
    /// Reads the query options of a request. Unknown `$` options are refused, as Graph does.
    pub fn parse(params: &HashMap<String, String>) -> Result<Self, GraphError> {
        let mut query = Self::default();
        for (name, value) in params {
            match name.as_str() {
                "$top" => {
                    let top: usize = value.parse().map_err(|_| {
                        GraphError::bad_request(format!(
                            "Invalid value '{}' for $top query option found.",
                            mock_common::clip(value, 40)
                        ))
                    })?;
                    if !(1..=1000).contains(&top) {
                        return Err(GraphError::bad_request(format!(
                            "Invalid value '{value}' for $top query option found."
                        )));
                    }
                    query.top = Some(top);
                }
                "$skip" => {
                    // An Edm.Int32 in Graph: a larger value is refused, never wrapped.
                    query.skip = value
                        .parse::<i32>()
                        .ok()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            GraphError::bad_request(format!(
                                "Invalid value '{}' for $skip query option found.",
                                mock_common::clip(value, 40)
                            ))
                        })?;
                }
                "$select" => {
                    query.select = Some(
                        value
                            .split(',')
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty())
                            .collect(),
                    );
                }
                "$filter" => query.filter = Some(Filter::parse(value)?),
                "$search" => query.search = Some(value.clone()),
                other if other.starts_with('$') => {
                    return Err(GraphError::bad_request(format!(
                        "Query option '{}' is not allowed.",
                        mock_common::clip(other, 40)
                    )));
                }
                _ => {}
            }
        }
        if query.search.is_some() && query.filter.is_some() {
            return Err(GraphError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "ErrorInvalidUrlQuery",
                "The query parameters '$filter' and '$search' cannot be used together.",
            ));
        }
        Ok(query)
    }

    pub fn selects(&self, property: &str) -> bool {
        self.select
            .as_ref()
            .is_some_and(|s| s.iter().any(|p| p.eq_ignore_ascii_case(property)))
    }

    /// Keeps only the selected properties (and `id`, `@odata.etag`), as `$select` does.
    pub fn project(
        &self,
        mut object: serde_json::Map<String, serde_json::Value>,
    ) -> serde_json::Value {
        if let Some(select) = &self.select {
            object.retain(|key, _| {
                key == "id"
                    || key == "@odata.etag"
                    || select.iter().any(|s| s.eq_ignore_ascii_case(key))
            });
        }
        serde_json::Value::Object(object)
    }
}

impl Filter {
    pub fn parse(text: &str) -> Result<Self, GraphError> {
        let invalid = || GraphError::bad_request(format!("Invalid filter clause: {text}"));
        let (property, rest) = text.trim().split_once(' ').ok_or_else(invalid)?;
        let rest = rest.trim_start();
        let literal = rest
            .strip_prefix("eq ")
            .or_else(|| rest.strip_prefix("EQ "))
            .ok_or_else(invalid)?
            .trim();
        let inner = literal
            .strip_prefix('\'')
            .and_then(|l| l.strip_suffix('\''))
            .ok_or_else(invalid)?;
        // Inside the quotes a quote must be doubled; a lone one ends the literal early.
        let mut value = String::with_capacity(inner.len());
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '\'' && chars.next_if_eq(&'\'').is_none() {
                return Err(invalid());
            }
            value.push(c);
        }
        Ok(Self {
            property: property.to_owned(),
            value,
        })
    }

    /// The value, if the filter is on `property` (case-insensitive, as OData names are).
    pub fn on(&self, property: &str) -> Result<&str, GraphError> {
        if self.property.eq_ignore_ascii_case(property) {
            Ok(&self.value)
        } else {
            Err(GraphError::bad_request(format!(
                "Invalid filter clause: filtering on '{}' is not supported here.",
                self.property
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_reads_doubled_quotes_and_refuses_lone_ones() {
        let f = Filter::parse("displayName eq 'WhatsApp Archiver'").unwrap();
        assert_eq!(
            (f.property.as_str(), f.value.as_str()),
            ("displayName", "WhatsApp Archiver")
        );
        let f = Filter::parse("displayName eq 'O''Brien''s'").unwrap();
        assert_eq!(f.value, "O'Brien's");
        assert!(Filter::parse("displayName eq 'O'Brien'").is_err());
        assert!(Filter::parse("displayName eq WhatsApp").is_err());
        assert!(Filter::parse("displayName ne 'x'").is_err());
    }

    #[test]
    fn query_options_are_checked() {
        let q = |pairs: &[(&str, &str)]| {
            Query::parse(
                &pairs
                    .iter()
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .collect(),
            )
        };
        assert_eq!(q(&[("$top", "5")]).unwrap().top, Some(5));
        assert!(q(&[("$top", "0")]).is_err());
        assert!(q(&[("$top", "x")]).is_err());
        assert!(q(&[("$expand", "x")]).is_err());
        let both = q(&[("$search", "\"a\""), ("$filter", "subject eq 'a'")]).unwrap_err();
        assert_eq!(both.code, "ErrorInvalidUrlQuery");
    }
}
