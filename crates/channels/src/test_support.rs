//! Shared by the channels' unit tests.

use bytes::Bytes;
use http::HeaderMap;

use crate::outbound::ProviderResponse;

/// A provider's answer with `status` and `body` and no headers.
pub(crate) fn answer(status: u16, body: &str) -> ProviderResponse {
    ProviderResponse {
        status,
        headers: HeaderMap::new(),
        body: Bytes::from(body.to_owned()),
    }
}
