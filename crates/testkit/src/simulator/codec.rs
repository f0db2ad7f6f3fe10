//! Bytes on the wire: JSON as each provider writes it, signatures, ids, times, URL parts.

use std::io::{self, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// JSON with every non-ASCII character escaped as `\uXXXX` (lowercase hex, UTF-16
/// surrogate pairs beyond the BMP), as Meta writes its webhooks. A receiver that
/// re-serialises the JSON before verifying gets other bytes and a wrong signature.
pub(super) fn ascii_json(value: &serde_json::Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    // Serialising a `Value` into a `Vec` cannot fail: there is no I/O error and every
    // `Value` is representable.
    if value.serialize(&mut serializer).is_err() {
        return plain_json(value);
    }
    out
}

/// JSON with UTF-8 text as is.
pub(super) fn plain_json(value: &serde_json::Value) -> Vec<u8> {
    // Cannot fail for a `Value`, see `ascii_json`.
    serde_json::to_vec(value).unwrap_or_default()
}

struct AsciiFormatter;

impl serde_json::ser::Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut units = [0u16; 2];
        for ch in fragment.chars() {
            if ch.is_ascii() {
                writer.write_all(&[ch as u8])?;
            } else {
                for unit in ch.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// Lowercase hex HMAC-SHA256 of `body` keyed with `key`.
pub(super) fn hmac_hex(key: &str, body: &[u8]) -> String {
    hex::encode(hmac_tag(key, body))
}

fn hmac_tag(key: &str, body: &[u8]) -> Vec<u8> {
    match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            mac.finalize().into_bytes().to_vec()
        }
        // HMAC takes keys of any length.
        Err(_) => Vec::new(),
    }
}

/// Checks a presented hex signature in constant time over the full tag.
pub(super) fn hmac_matches(key: &str, body: &[u8], presented_hex: &str) -> bool {
    let Ok(tag) = hex::decode(presented_hex) else {
        return false;
    };
    match HmacSha256::new_from_slice(key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(body);
            mac.verify_slice(&tag).is_ok()
        }
        Err(_) => false,
    }
}

/// Constant-time equality for tokens: every byte is looked at whatever the first
/// difference; different lengths are unequal.
pub(super) fn token_matches(presented: &str, expected: &str) -> bool {
    let (presented, expected) = (presented.as_bytes(), expected.as_bytes());
    if presented.len() != expected.len() || expected.is_empty() {
        return false;
    }
    presented
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

pub(super) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

pub(super) fn sha256_base64(bytes: &[u8]) -> String {
    base64(&Sha256::digest(bytes))
}

/// Standard base64 with padding (RFC 4648 §4), as WhatsApp gives media hashes.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub(super) fn now_unix_seconds() -> i64 {
    now_unix_millis() / 1000
}

pub(super) fn now_unix_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) fn now_unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Now as RFC 3339 in UTC with seconds, e.g. `2026-11-25T15:00:00Z`.
pub(super) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc().replace_nanosecond(0);
    let now = now.unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// `%XX` decoding of a URL component; `+` is a space only in form data. Invalid escapes
/// stay as they are, invalid UTF-8 becomes U+FFFD.
pub(super) fn percent_decode(component: &str, plus_is_space: bool) -> String {
    let bytes = component.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let escaped = (byte == b'%')
            .then(|| bytes.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(decoded) => {
                out.push(decoded);
                i += 3;
            }
            None => {
                out.push(if plus_is_space && byte == b'+' {
                    b' '
                } else {
                    byte
                });
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `a=1&b=2` into decoded pairs, in order.
pub(super) fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key, true), percent_decode(value, true))
        })
        .collect()
}

/// `Bearer <JWT>` with the same header and claims, signed with `key` instead (HS256):
/// a token of the right form that does not hold.
pub(super) fn resigned_bearer(value: &str, key: &str) -> String {
    let token = value.strip_prefix("Bearer ").unwrap_or(value);
    let signed_part = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    let Ok(mut mac) = HmacSha256::new_from_slice(key.as_bytes()) else {
        return value.to_owned();
    };
    mac.update(signed_part.as_bytes());
    let signature = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        mac.finalize().into_bytes(),
    );
    format!("Bearer {signed_part}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_json_escapes_like_meta() {
        let value = serde_json::json!({"t": "äö 𝄞 \u{0} /"});
        let bytes = ascii_json(&value);
        assert_eq!(
            String::from_utf8(bytes).ok().as_deref(),
            Some(r#"{"t":"\u00e4\u00f6 \ud834\udd1e \u0000 /"}"#)
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }

    #[test]
    fn percent_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(percent_decode("a%3Ab+c%zz%", true), "a:b c%zz%");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("%C3%BC", false), "ü");
    }

    #[test]
    fn tokens_compare_whole() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("ab", "abc"));
        assert!(!token_matches("", ""));
    }
}
