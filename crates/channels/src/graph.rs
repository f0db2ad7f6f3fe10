//! What WhatsApp and Messenger share as Meta Graph API senders: the error shape and the
//! rate-limit codes (`CHANNELS.md` §1.5, §2.4, §6). Meta says to classify by
//! `error.code`, not by the HTTP status or the title.

use helpline_domain::Channel;
use serde::Deserialize;

use crate::outbound::{ProviderResponse, Reason, SendOutcome, by_status};

/// Graph codes that mean "too many calls": WhatsApp's throughput (130429), per-user pair
/// (131056) and per-account hourly (80007) limits, the app's call limit (4), the Send
/// API's rate limit (613) and its temporary failure (2). Retried with backoff.
const RETRY_CODES: [i64; 6] = [130429, 131056, 80007, 4, 613, 2];

/// `{"error": {...}}`, the shape of every Graph failure.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: GraphError,
}

#[derive(Debug, Deserialize)]
pub(crate) struct GraphError {
    #[serde(default)]
    pub message: String,
    pub code: Option<i64>,
    pub error_subcode: Option<i64>,
    pub error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorData {
    pub details: Option<String>,
}

/// Classifies a Graph answer that is not a readable success: rate-limit codes are
/// retried, `window_closed` codes are [`SendOutcome::WindowClosed`], and anything else
/// follows the HTTP status (429 and 5xx retried, the rest permanent). The reason is the
/// status and Meta's code, with Meta's own message and details as the provider's words.
pub(crate) fn classify_failure(
    channel: Channel,
    response: &ProviderResponse,
    window_closed: impl Fn(&GraphError) -> bool,
) -> SendOutcome {
    let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(&response.body) else {
        let reason =
            response.body_reason(format!("{} answered {}", channel.as_str(), response.status));
        return by_status(response, reason);
    };
    let reason = reason(channel, response.status, &error);
    if error.code.is_some_and(|code| RETRY_CODES.contains(&code)) {
        return SendOutcome::Retry {
            after: response.retry_after(),
            reason,
        };
    }
    if window_closed(&error) {
        return SendOutcome::WindowClosed { reason };
    }
    by_status(response, reason)
}

fn reason(channel: Channel, status: u16, error: &GraphError) -> Reason {
    let code = match (error.code, error.error_subcode) {
        (Some(code), Some(sub)) => format!(", error {code}/{sub}"),
        (Some(code), None) => format!(", error {code}"),
        (None, _) => String::new(),
    };
    let details = error
        .error_data
        .as_ref()
        .and_then(|data| data.details.as_deref())
        .filter(|details| !details.is_empty())
        .map(|details| format!(" ({details})"))
        .unwrap_or_default();
    Reason::provider(
        format!("{} answered {status}{code}", channel.as_str()),
        &format!("{}{details}", error.message),
    )
}
