//! Payload value encodings (PROTOCOL.md §5.1).
//!
//! BLOBs travel as standard padded base64, except a BLOB sync key, which travels as a canonical UUID. A string
//! bound for a BLOB column is decoded by the first matching rule: dashed UUID, 32 hex digits, base64 that
//! re-encodes to the same text, even-length hex.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use uuid::Uuid;

use crate::pk::parse_uuid;

/// Encodes bytes as standard base64 with padding; the empty BLOB is `""`.
pub fn encode_base64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Decodes a string destined for a BLOB column, or `None` when no rule of §5.1 matches.
pub fn decode_blob(s: &str) -> Option<Vec<u8>> {
    if is_dashed_uuid(s) || (s.len() == 32 && is_hex(s)) {
        return parse_uuid(s).map(|u| u.as_bytes().to_vec());
    }
    if let Ok(bytes) = STANDARD.decode(s)
        && STANDARD.encode(&bytes) == s
    {
        return Some(bytes);
    }
    if s.len().is_multiple_of(2) && is_hex(s) {
        return decode_hex(s);
    }
    None
}

/// Converts a foreign-key value to a UUID: any accepted UUID form, or the base64 of exactly 16 bytes (how
/// classic clients send BLOB foreign keys).
pub fn fk_value_to_uuid(s: &str) -> Option<Uuid> {
    parse_uuid(s).or_else(|| {
        let bytes = STANDARD.decode(s).ok()?;
        Uuid::from_slice(&bytes).ok()
    })
}

/// Lower-case hex of `bytes`.
pub fn encode_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Decodes even-length hex (either case).
pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let hi = (pair[0] as char).to_digit(16)?;
            let lo = (pair[1] as char).to_digit(16)?;
            u8::try_from(hi * 16 + lo).ok()
        })
        .collect()
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn is_dashed_uuid(s: &str) -> bool {
    s.len() == 36 && parse_uuid(s).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_rules_apply_in_order() {
        let uuid_bytes = Uuid::parse_str("9d7e6f50-1a2b-4c3d-8e9f-001122334455").unwrap();
        assert_eq!(
            decode_blob("9D7E6F50-1A2B-4C3D-8E9F-001122334455").unwrap(),
            uuid_bytes.as_bytes()
        );
        assert_eq!(
            decode_blob("9d7e6f501a2b4c3d8e9f001122334455").unwrap(),
            uuid_bytes.as_bytes()
        );
        assert_eq!(decode_blob("AAEC/w==").unwrap(), vec![0, 1, 2, 255]);
        assert_eq!(decode_blob("").unwrap(), Vec::<u8>::new());
        // Valid padded base64 wins over hex when both read it.
        assert_eq!(decode_blob("abcd").unwrap(), STANDARD.decode("abcd").unwrap());
        // Six characters cannot be padded base64, so this is hex.
        assert_eq!(decode_blob("00ff10").unwrap(), vec![0x00, 0xff, 0x10]);
        assert_eq!(decode_blob("0f"), Some(vec![0x0f]));
        assert_eq!(decode_blob("AAEC/w"), None);
        assert_eq!(decode_blob("zz!"), None);
    }

    #[test]
    fn hex_round_trips() {
        let bytes = [0u8, 1, 0xab, 0xff];
        assert_eq!(encode_hex(&bytes), "0001abff");
        assert_eq!(decode_hex("0001ABff").unwrap(), bytes);
        assert_eq!(decode_hex("0g"), None);
        assert_eq!(decode_hex("abc"), None);
    }

    #[test]
    fn fk_values_accept_uuid_forms_and_base64_of_16_bytes() {
        let u = Uuid::parse_str("9d7e6f50-1a2b-4c3d-8e9f-001122334455").unwrap();
        assert_eq!(fk_value_to_uuid("{9D7E6F50-1A2B-4C3D-8E9F-001122334455}"), Some(u));
        assert_eq!(fk_value_to_uuid(&encode_base64(u.as_bytes())), Some(u));
        assert_eq!(fk_value_to_uuid(&encode_base64(&[1, 2, 3])), None);
        assert_eq!(fk_value_to_uuid("nope"), None);
    }
}
