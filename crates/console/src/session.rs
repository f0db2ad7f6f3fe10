//! The browser's session: the same bearer token the gRPC APIs check, kept in a cookie no
//! script can read, and the CSRF token a page must echo on every state change.
//!
//! The CSRF token is derived from the session token (a hash under a label of its own), so
//! the console keeps no state of its own: a page reads it from its readable cookie and
//! sends it back as `x-csrf-token`; a forged request from another site carries the
//! session cookie (SameSite=Strict already keeps it back from most) but cannot read the
//! CSRF cookie nor compute the value without the session token.

use std::time::Duration;

use http::HeaderMap;
use http::header::{COOKIE, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The cookie holding the bearer token: httpOnly, Secure, SameSite=Strict.
pub const SESSION_COOKIE: &str = "helpline_session";
/// The cookie holding the CSRF token, readable by the console's own scripts.
pub const CSRF_COOKIE: &str = "helpline_csrf";
/// The header a state-changing request echoes the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The CSRF token of the session whose bearer token is `token`.
pub fn csrf_token(token: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"helpline console csrf\0");
    hash.update(token.as_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// The value of cookie `name` in `headers`, if the browser sent it.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// Whether `headers` carry the CSRF token of session `token` (compared in constant time).
pub fn csrf_holds(headers: &HeaderMap, token: &str) -> bool {
    let Some(sent) = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    sent.as_bytes().ct_eq(csrf_token(token).as_bytes()).into()
}

/// The two `Set-Cookie` values that open a session with `token` for `ttl`.
pub fn open(token: &str, ttl: Duration) -> [HeaderValue; 2] {
    let age = ttl.as_secs();
    [
        cookie_value(&format!(
            "{SESSION_COOKIE}={token}; Path=/; Max-Age={age}; HttpOnly; Secure; SameSite=Strict"
        )),
        cookie_value(&format!(
            "{CSRF_COOKIE}={}; Path=/; Max-Age={age}; Secure; SameSite=Strict",
            csrf_token(token)
        )),
    ]
}

/// The two `Set-Cookie` values that end a session in the browser.
pub fn close() -> [HeaderValue; 2] {
    [
        cookie_value(&format!(
            "{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
        )),
        cookie_value(&format!(
            "{CSRF_COOKIE}=; Path=/; Max-Age=0; Secure; SameSite=Strict"
        )),
    ]
}

fn cookie_value(text: &str) -> HeaderValue {
    // A token is base64url and dots, a CSRF token hex: always a valid header value.
    HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_out_of_scripts_reach_and_stays_on_its_site() {
        let [session, csrf] = open("abc.def.ghi", Duration::from_secs(60));
        let session = session.to_str().unwrap();
        assert!(session.starts_with("helpline_session=abc.def.ghi;"));
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Max-Age=60"] {
            assert!(session.contains(attribute), "{session} lacks {attribute}");
        }
        let csrf = csrf.to_str().unwrap();
        assert!(
            !csrf.contains("HttpOnly"),
            "the page must read the CSRF token"
        );
        assert!(csrf.contains(&csrf_token("abc.def.ghi")));
    }

    #[test]
    fn a_csrf_token_belongs_to_one_session() {
        let mut headers = HeaderMap::new();
        headers.insert(CSRF_HEADER, csrf_token("one").parse().unwrap());
        assert!(csrf_holds(&headers, "one"));
        assert!(!csrf_holds(&headers, "two"));
        assert!(!csrf_holds(&HeaderMap::new(), "one"));
    }

    #[test]
    fn a_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(COOKIE, "a=1; helpline_session=tok; b=2".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("tok"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), None);
    }
}
