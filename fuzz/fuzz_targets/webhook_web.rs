//! Fuzzes the web chat webhook: `parse` on any bytes, and `verify` on a request whose body is
//! those bytes, with a credential chosen by `helpline_fuzz::request_parts`. Neither may
//! panic; `verify` must refuse a missing, repeated or wrong credential and accept a valid one.

#![no_main]

use std::sync::LazyLock;

use helpline_fuzz::{Credential, Presented, request_parts};
use helpline_ingress::channels::web::{WebAdapter, WebConfig};
use helpline_ingress::{InboundAdapter, WebhookError, WebhookRequest};
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
    let parsed = ADAPTER.parse(data);
    let _ = format!("{parsed:?}");

    let parts = request_parts(data, CREDENTIAL);
    let request = WebhookRequest {
        headers: &parts.headers,
        query: parts.query.as_deref(),
        body: data,
    };
    let verified = ADAPTER.verify(&request);
    let _ = format!("{request:?} {verified:?}");
    match parts.presented {
        Presented::Valid => assert!(
            matches!(
                verified,
                Ok(()) | Err(WebhookError::UnsupportedMediaType(_))
            ),
            "valid signature refused: {verified:?}",
        ),
        Presented::Absent | Presented::Twice | Presented::WrongHex => assert!(
            matches!(verified, Err(WebhookError::Unauthorized(_))),
            "{:?} credential accepted: {verified:?}",
            parts.presented,
        ),
        Presented::Raw => {}
    }
});
