//! Fuzzes the Viber webhook: `parse` on any bytes, and `verify` on a request whose body is
//! those bytes, with a credential chosen by `helpline_fuzz::request_parts`. Neither may
//! panic; `verify` must refuse a missing, repeated or wrong credential and accept a valid one.

#![no_main]

use std::sync::LazyLock;

use helpline_fuzz::{Credential, check, nothing_else};
use helpline_channels::viber::{ViberAdapter, ViberConfig};
use libfuzzer_sys::fuzz_target;

const CREDENTIAL: Credential = Credential::Hmac {
    header: "x-viber-content-signature",
    prefix: "",
    key: "fuzz-auth-token",
};

static ADAPTER: LazyLock<ViberAdapter> = LazyLock::new(|| {
    ViberAdapter::new(ViberConfig {
        auth_token: "fuzz-auth-token".into(),
        ..Default::default()
    })
    .expect("a valid configuration")
});

fuzz_target!(|data: &[u8]| {
    check(&*ADAPTER, CREDENTIAL, data, nothing_else);
});
