//! Fuzzes the web chat webhook: `parse` on any bytes, and `verify` on a request whose body is
//! those bytes, with a credential chosen by `helpline_fuzz::request_parts`. Neither may
//! panic; `verify` must refuse a missing, repeated or wrong credential and accept a valid one.

#![no_main]

use std::sync::LazyLock;

use helpline_fuzz::{Credential, check};
use helpline_channels::WebhookError;
use helpline_channels::web::{WebAdapter, WebConfig};
use libfuzzer_sys::fuzz_target;

const CREDENTIAL: Credential = Credential::Hmac {
    header: "x-helpline-signature",
    prefix: "sha256=",
    key: "fuzz-shared-secret",
};

static ADAPTER: LazyLock<WebAdapter> = LazyLock::new(|| {
    WebAdapter::new(WebConfig {
        shared_secret: "fuzz-shared-secret".into(),
        ..Default::default()
    })
    .expect("a valid configuration")
});

fuzz_target!(|data: &[u8]| {
    check(&*ADAPTER, CREDENTIAL, data, |e| {
        matches!(e, WebhookError::UnsupportedMediaType(_))
    });
});
