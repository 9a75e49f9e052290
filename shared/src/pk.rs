//! Primary keys on the wire are UUIDs (PROTOCOL.md §2). Input may be dashed in any case, 32 hex digits,
//! `{…}` or `urn:uuid:`; everything emitted is the canonical lower-case dashed form.

use uuid::Uuid;

/// Parses a UUID in any accepted input form.
pub fn parse_uuid(raw: &str) -> Option<Uuid> {
    let lower = raw.to_ascii_lowercase();
    let body = lower
        .strip_prefix("urn:uuid:")
        .or_else(|| lower.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
        .unwrap_or(&lower);
    let hex_only = match body.len() {
        32 => body.bytes().all(|b| b.is_ascii_hexdigit()),
        36 => body.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        }),
        _ => false,
    };
    if !hex_only {
        return None;
    }
    Uuid::try_parse(body).ok()
}

/// Canonicalises a UUID in any accepted form to lower-case dashed text.
pub fn canonical_pk(raw: &str) -> Option<String> {
    parse_uuid(raw).map(|u| u.hyphenated().to_string())
}

/// True when `s` is already canonical (what clients must store in TEXT key columns).
pub fn is_canonical(s: &str) -> bool {
    canonical_pk(s).is_some_and(|c| c == s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANON: &str = "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f";

    #[test]
    fn every_accepted_form_canonicalises_to_one_value() {
        for form in [
            CANON,
            "0B1C2D3E-4F50-4617-8829-3A4B5C6D7E8F",
            "0b1c2d3e4f50461788293a4b5c6d7e8f",
            "{0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f}",
            "urn:uuid:0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f",
            "URN:UUID:0B1C2D3E-4F50-4617-8829-3A4B5C6D7E8F",
        ] {
            assert_eq!(canonical_pk(form).as_deref(), Some(CANON), "{form}");
        }
        assert!(is_canonical(CANON));
        assert!(!is_canonical("0B1C2D3E-4F50-4617-8829-3A4B5C6D7E8F"));
    }

    #[test]
    fn malformed_uuids_are_rejected() {
        for bad in [
            "",
            "not-a-uuid",
            "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8",
            "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8fa",
            "0b1c2d3e4f50-4617-8829-3a4b5c6d7e8f-",
            "{0b1c2d3e4f50461788293a4b5c6d7e8f",
            " 0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8f",
            "0b1c2d3e-4f50-4617-8829-3a4b5c6d7e8g",
        ] {
            assert_eq!(canonical_pk(bad), None, "{bad}");
        }
    }
}
