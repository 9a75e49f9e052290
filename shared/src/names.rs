//! Schema and table names (PROTOCOL.md §2): trimmed, lower-cased, then `^[a-z0-9_]+$`.

use std::fmt;

/// The schema used when a change names none.
pub const DEFAULT_SCHEMA: &str = "public";

/// Trims and lower-cases a schema name; an empty result becomes [`DEFAULT_SCHEMA`].
pub fn normalize_schema(raw: &str) -> String {
    let s = raw.trim().to_lowercase();
    if s.is_empty() { DEFAULT_SCHEMA.to_owned() } else { s }
}

/// Trims and lower-cases a table name.
pub fn normalize_table(raw: &str) -> String {
    raw.trim().to_lowercase()
}

/// True when `name` is non-empty and consists only of `a-z`, `0-9` and `_`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A normalised, valid `(schema, table)` pair.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableRef {
    /// Normalised schema name.
    pub schema: String,
    /// Normalised table name.
    pub table: String,
}

impl TableRef {
    /// Builds a pair from already-normalised names.
    pub fn new(schema: impl Into<String>, table: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
        }
    }

    /// Parses `schema.table` (or a bare `table`, meaning `public.table`), normalising both parts.
    /// Returns `None` when either part is not a valid name.
    pub fn parse(qualified: &str) -> Option<Self> {
        let (schema, table) = match qualified.split_once('.') {
            Some((s, t)) => (normalize_schema(s), normalize_table(t)),
            None => (DEFAULT_SCHEMA.to_owned(), normalize_table(qualified)),
        };
        (is_valid_name(&schema) && is_valid_name(&table)).then_some(Self { schema, table })
    }
}

impl fmt::Display for TableRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_schema_means_public_and_names_are_lowercased() {
        assert_eq!(normalize_schema("  "), "public");
        assert_eq!(normalize_schema(" Business "), "business");
        assert_eq!(normalize_table(" Users"), "users");
    }

    #[test]
    fn only_lowercase_digits_and_underscore_are_valid() {
        assert!(is_valid_name("file_reviews2"));
        for bad in ["", "users;drop", "user-s", "Users", "a.b", "\"x\"", "ü"] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn qualified_names_parse() {
        assert_eq!(
            TableRef::parse("Business.Users"),
            Some(TableRef::new("business", "users"))
        );
        assert_eq!(TableRef::parse("users"), Some(TableRef::new("public", "users")));
        assert_eq!(TableRef::parse("a.b-c"), None);
    }
}
