//! Fuzzes the Apple Messages for Business webhook: `parse` on any bytes (gzip or not), and
//! `verify` on a request whose body is those bytes, with a credential chosen by
//! `helpline_fuzz::request_parts` (a valid token of Apple's, or a broken one). Neither may
//! panic; `verify` must refuse a missing, repeated or wrong token and accept a valid one.

#![no_main]

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use helpline_channels::apple::{AppleAdapter, AppleConfig};
use helpline_fuzz::{Credential, check, nothing_else};
use libfuzzer_sys::fuzz_target;

const MSP_ID: &str = "fuzz-msp";
const BUSINESS_ID: &str = "fuzz-business";
/// "fuzz-apple-messaging-secret", Base64.
const SECRET: &str = "ZnV6ei1hcHBsZS1tZXNzYWdpbmctc2VjcmV0";

/// Apple's token, made once when the target starts (valid for an hour either way).
static TOKEN: LazyLock<&'static str> = LazyLock::new(|| {
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"aud": MSP_ID, "iat": iat}),
        &jsonwebtoken::EncodingKey::from_secret(b"fuzz-apple-messaging-secret"),
    )
    .expect("a token");
    Box::leak(format!("Bearer {token}").into_boxed_str())
});

static ADAPTER: LazyLock<AppleAdapter> = LazyLock::new(|| {
    AppleAdapter::new(AppleConfig {
        msp_id: MSP_ID.to_owned(),
        secret: SECRET.into(),
        business_id: BUSINESS_ID.to_owned(),
        ..Default::default()
    })
    .expect("a valid configuration")
});

fuzz_target!(|data: &[u8]| {
    let credential = Credential::TokenWith {
        header: "authorization",
        token: *TOKEN,
        with: &[("destination-id", BUSINESS_ID)],
    };
    check(&*ADAPTER, credential, data, nothing_else);
});
