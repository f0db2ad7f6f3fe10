//! Fuzzes the Telegram webhook: `parse` on any bytes, and `verify` on a request whose body is
//! those bytes, with a credential chosen by `helpline_fuzz::request_parts`. Neither may
//! panic; `verify` must refuse a missing, repeated or wrong credential and accept a valid one.

#![no_main]

use std::sync::LazyLock;

use helpline_fuzz::{Credential, check, nothing_else};
use helpline_channels::telegram::{TelegramAdapter, TelegramConfig};
use libfuzzer_sys::fuzz_target;

const CREDENTIAL: Credential = Credential::Token {
    header: "x-telegram-bot-api-secret-token",
    token: "fuzz_secret-token",
};

static ADAPTER: LazyLock<TelegramAdapter> = LazyLock::new(|| {
    TelegramAdapter::new(TelegramConfig {
        secret_token: "fuzz_secret-token".into(),
        ..Default::default()
    })
    .expect("a valid configuration")
});

fuzz_target!(|data: &[u8]| {
    check(&*ADAPTER, CREDENTIAL, data, nothing_else);
});
