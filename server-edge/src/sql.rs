//! SQL text helpers.

/// Quotes an identifier for PostgreSQL: every identifier the server interpolates goes through here.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    #[test]
    fn identifiers_are_quoted_and_embedded_quotes_doubled() {
        assert_eq!(super::quote_ident("users"), "\"users\"");
        assert_eq!(
            super::quote_ident("a\"; drop table x; --"),
            "\"a\"\"; drop table x; --\""
        );
    }
}
