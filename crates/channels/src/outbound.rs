//! What every channel's sending side implements, the request it builds and the answer it
//! reads, plus the rules all channels share (`Retry-After`, 429 and 5xx).

use std::fmt;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use helpline_domain::{Channel, MessageId, QuickReply, TicketId, WhatsAppTemplateCall};
use http::header::{CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderName, HeaderValue, Method};

use crate::error::ConfigError;

/// One message to send to a customer, as the outbound event and the ticket say.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    pub ticket: TicketId,
    /// helpline's id for the message; every request's idempotency key derives from it.
    pub message: MessageId,
    pub channel: Channel,
    /// The customer's address on the channel (personal data).
    pub contact: String,
    /// The text to send (personal data).
    pub text: String,
    /// The bot's step that wrote the message (`rating`, `ask_language`, …); empty for an
    /// agent's message. WhatsApp picks its template by it.
    pub prompt: String,
    /// Buttons the customer can tap instead of typing, rendered as each channel allows.
    /// The bot's own words, not personal data.
    pub choices: Vec<QuickReply>,
    /// The ticket's language (BCP 47), for the few words egress adds itself.
    pub language: String,
    /// When the customer last wrote, for WhatsApp's and Messenger's 24-hour windows;
    /// `None` if unknown.
    pub customer_last_message_at: Option<SystemTime>,
    /// For a notification (the brand writing first): what it goes out as outside the
    /// customer's window. `None` for the bot's and agents' messages.
    pub notification: Option<NotificationMeans>,
}

/// What a notification carries for outside the customer's window, as its event says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotificationMeans {
    /// WhatsApp: the approved template (its parameters are personal data).
    pub whatsapp_template: Option<WhatsAppTemplateCall>,
    /// Messenger: the message tag.
    pub message_tag: Option<String>,
}

impl OutboundMessage {
    /// The idempotency key of every request for this message: the message id. The web
    /// chat backend dedupes on it (`event_id`); other providers ignore it.
    pub fn idempotency_key(&self) -> String {
        self.message.0.to_string()
    }
}

/// Prints the ids and the channel only: contact and text are personal data.
impl fmt::Debug for OutboundMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboundMessage")
            .field("ticket", &self.ticket)
            .field("message", &self.message)
            .field("channel", &self.channel)
            .field("contact", &"***")
            .field("text", &"***")
            .field("prompt", &self.prompt)
            .field("choices", &self.choices.len())
            .field("language", &self.language)
            .field("customer_last_message_at", &self.customer_last_message_at)
            .field("notification", &self.notification.is_some())
            .finish()
    }
}

/// What a provider's answer to one send attempt means (`CHANNELS.md` §6).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The provider took the message; its id matches later receipts.
    Accepted { provider_message_id: String },
    /// Worth another attempt: rate limits, 5xx, timeouts. `after` is the provider's own
    /// wait (`Retry-After`, Telegram's `retry_after`); without it the sender backs off.
    Retry {
        after: Option<Duration>,
        reason: Reason,
    },
    /// Another attempt cannot help.
    Permanent { reason: Reason },
    /// The customer's messaging window is closed (WhatsApp `131047`/`470`, Messenger
    /// `2018278`): free text is refused, a template may still go out.
    WindowClosed { reason: Reason },
}

/// What a request carries: the message's text (with its choices), or the channel's form
/// for outside the customer's window: WhatsApp's template (the re-engagement template,
/// or a notification's own), a notification's message tag on Messenger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Text,
    Template,
}

/// Sent with every request; only the web chat backend reads it (as `event_id`, too).
pub const IDEMPOTENCY_HEADER: &str = "x-idempotency-key";
/// A provider's words on a failure are cut to this many characters before they reach an
/// event.
const MAX_REASON_CHARS: usize = 300;

/// Why a send did not go through, in two parts.
///
/// The summary may be logged, dead-lettered and counted: the channel, the HTTP status and
/// the provider's error code, or helpline's own words. What the provider *said* (Meta's
/// message and details, Telegram's description, Viber's status message, the web chat's
/// error, a body egress cannot read) can name the customer — "+49151… is not a WhatsApp
/// user", a profile name — so it goes only into the failure event, where the agent reads
/// it and which seals it under the customer's key. `Display` is the summary alone, and
/// `Debug` prints the words as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Reason {
    summary: String,
    said: Option<String>,
}

impl Reason {
    /// helpline's own words, naming nothing of the customer's.
    pub fn ours(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            said: None,
        }
    }

    /// What the provider said (cut to a size fit for an event; an empty text is
    /// nothing), after a `summary` of channel, status and code.
    pub fn provider(summary: impl Into<String>, said: &str) -> Self {
        let said = said.trim();
        Self {
            summary: summary.into(),
            said: (!said.is_empty()).then(|| truncate(said)),
        }
    }

    /// What may be logged: channel, status and code, or helpline's words.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// The provider's own words, if it gave any: only for the sealed event.
    pub fn said(&self) -> Option<&str> {
        self.said.as_deref()
    }

    /// The whole reason, as the failure event records it for the agent.
    pub fn recorded(&self) -> String {
        match &self.said {
            Some(said) => format!("{}: {said}", self.summary),
            None => self.summary.clone(),
        }
    }

    /// The same reason with helpline's `note` added to the summary.
    pub fn noting(mut self, note: &str) -> Self {
        self.summary.push_str(note);
        self
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

impl fmt::Debug for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reason")
            .field("summary", &self.summary)
            .field("said", &self.said.as_ref().map(|_| "***"))
            .finish()
    }
}

/// A message this channel cannot send, whatever the provider would say: a permanent
/// failure decided before any request (no template outside the window, a bad header).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unsendable(pub String);

/// One channel's outbound side: which form to send, the provider request, and what the
/// provider's answer means.
///
/// Implementations are pure: no I/O, no clock (`now` is passed in), no shared state.
pub trait OutboundAdapter: Send + Sync + fmt::Debug {
    fn channel(&self) -> Channel;

    /// The form of the first attempt. Only WhatsApp looks at `now` (wall-clock time) and
    /// the customer's last message: outside the 24-hour window it sends its template.
    fn first_form(&self, _message: &OutboundMessage, _now: SystemTime) -> Result<Form, Unsendable> {
        Ok(Form::Text)
    }

    /// The form to try, once, after [`SendOutcome::WindowClosed`]; `None` gives up.
    fn after_window_closed(&self, _message: &OutboundMessage, _form: Form) -> Option<Form> {
        None
    }

    /// The provider request for `message` in `form`.
    fn build(&self, message: &OutboundMessage, form: Form) -> Result<ProviderRequest, Unsendable>;

    /// What the provider's answer means. Never panics, whatever the bytes.
    fn classify(&self, message: &OutboundMessage, response: &ProviderResponse) -> SendOutcome;
}

/// An HTTP request to a provider.
#[derive(Clone)]
pub struct ProviderRequest {
    pub method: Method,
    /// May hold a secret (Telegram's bot token is part of the path).
    pub url: String,
    /// Secret values are marked sensitive.
    pub headers: HeaderMap,
    /// JSON; holds personal data.
    pub body: Bytes,
}

/// Shows the method, header names and body size: the URL may hold a token and the body
/// holds the contact and the text.
impl fmt::Debug for ProviderRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header_names: Vec<&str> = self.headers.keys().map(HeaderName::as_str).collect();
        f.debug_struct("ProviderRequest")
            .field("method", &self.method)
            .field("headers", &header_names)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// A provider's answer, as received.
#[derive(Clone, Debug, Default)]
pub struct ProviderResponse {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl ProviderResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `Retry-After` in delta-seconds; an HTTP date or garbage counts as absent (the
    /// sender then backs off on its own).
    pub fn retry_after(&self) -> Option<Duration> {
        let value = self.headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
        value.parse::<u64>().ok().map(Duration::from_secs)
    }

    /// A reason whose provider's words are the body, for an answer the channel cannot
    /// read: `summary`, saying so when the body is empty. Never fails.
    pub(crate) fn body_reason(&self, summary: String) -> Reason {
        let text = String::from_utf8_lossy(&self.body);
        if text.trim().is_empty() {
            Reason::ours(format!("{summary}: no body"))
        } else {
            Reason::provider(summary, &text)
        }
    }
}

/// The rules every channel shares once its own codes are read: `429` waits for
/// `Retry-After`, `5xx` is retried, any other failure is permanent with `reason`.
pub(crate) fn by_status(response: &ProviderResponse, reason: Reason) -> SendOutcome {
    by_code(response.status, response.retry_after(), reason)
}

/// [`by_status`] for a status the provider reported in its body (Telegram's
/// `error_code`) as well as in the HTTP status line.
pub(crate) fn by_code(status: u16, after: Option<Duration>, reason: Reason) -> SendOutcome {
    match status {
        429 | 500..=599 => SendOutcome::Retry { after, reason },
        _ => SendOutcome::Permanent { reason },
    }
}

/// A `2xx` whose body does not say what happened. The provider probably took the
/// message, so a retry could send it twice; it fails, saying so, and a person decides.
pub(crate) fn unreadable_success(channel: Channel, response: &ProviderResponse) -> SendOutcome {
    SendOutcome::Permanent {
        reason: response.body_reason(format!(
            "{} answered {} with an unreadable body, so the message may have been delivered",
            channel.as_str(),
            response.status,
        )),
    }
}

/// A provider's free text, cut to a size fit for an event.
fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_REASON_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A JSON `POST` of `body` with the idempotency key and the channel's own headers
/// (`(name, value, sensitive)`).
pub(crate) fn json_post(
    url: String,
    message: &OutboundMessage,
    body: Vec<u8>,
    extra: &[(HeaderName, &str, bool)],
) -> Result<ProviderRequest, Unsendable> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        HeaderName::from_static(IDEMPOTENCY_HEADER),
        header_value(&message.idempotency_key(), false)?,
    );
    for (name, value, sensitive) in extra {
        headers.insert(name.clone(), header_value(value, *sensitive)?);
    }
    Ok(ProviderRequest {
        method: Method::POST,
        url,
        headers,
        body: Bytes::from(body),
    })
}

/// The request body as JSON bytes.
pub(crate) fn to_json(body: &serde_json::Value) -> Result<Vec<u8>, Unsendable> {
    serde_json::to_vec(body).map_err(|e| Unsendable(format!("cannot encode the request: {e}")))
}

/// `Authorization: Bearer <token>`, marked sensitive.
pub(crate) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn header_value(value: &str, sensitive: bool) -> Result<HeaderValue, Unsendable> {
    let mut value = HeaderValue::from_str(value)
        // The value is a configured secret: never repeat it.
        .map_err(|_| Unsendable("a configured header value is not valid in HTTP".to_owned()))?;
    value.set_sensitive(sensitive);
    Ok(value)
}

/// Refuses an API address that is not an http(s) URL with a host.
pub(crate) fn require_url(
    channel: Channel,
    field: &'static str,
    url: &str,
) -> Result<(), ConfigError> {
    let valid = url::Url::parse(url)
        .is_ok_and(|url| matches!(url.scheme(), "http" | "https") && url.has_host());
    if valid {
        Ok(())
    } else {
        Err(ConfigError::invalid(
            channel,
            field,
            "must be an http or https URL",
        ))
    }
}

/// Refuses an empty required setting that is not a secret (ids, URLs).
pub(crate) fn require_setting(
    channel: Channel,
    field: &'static str,
    value: &str,
) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        Err(ConfigError::invalid(channel, field, "must not be empty"))
    } else {
        Ok(())
    }
}

/// `base` and `path` joined with exactly one `/`.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn response(status: u16, retry_after: Option<&str>) -> ProviderResponse {
        let mut headers = HeaderMap::new();
        if let Some(value) = retry_after {
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        ProviderResponse {
            status,
            headers,
            body: Bytes::new(),
        }
    }

    #[test]
    fn retry_after_reads_delta_seconds_only() {
        assert_eq!(
            response(429, Some("15")).retry_after(),
            Some(Duration::from_secs(15))
        );
        assert_eq!(
            response(429, Some(" 2 ")).retry_after(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            response(429, Some("Wed, 21 Oct 2015 07:28:00 GMT")).retry_after(),
            None
        );
        assert_eq!(response(429, Some("-1")).retry_after(), None);
        assert_eq!(response(429, None).retry_after(), None);
    }

    #[test]
    fn shared_rules_retry_429_and_5xx_only() {
        let reason = || Reason::ours("r");
        assert_eq!(
            by_status(&response(429, Some("3")), reason()),
            SendOutcome::Retry {
                after: Some(Duration::from_secs(3)),
                reason: reason()
            }
        );
        for status in [500, 502, 503, 504] {
            assert!(matches!(
                by_status(&response(status, None), reason()),
                SendOutcome::Retry { after: None, .. }
            ));
        }
        for status in [400, 401, 403, 404, 408, 409, 413, 422] {
            assert!(matches!(
                by_status(&response(status, None), reason()),
                SendOutcome::Permanent { .. }
            ));
        }
    }

    #[test]
    fn a_reason_shows_the_provider_s_words_only_whole() {
        let reason = Reason::provider(
            "whatsapp answered 400, error 131026",
            " (#131026) +4915112345678 is not a WhatsApp user ",
        );
        assert_eq!(reason.to_string(), "whatsapp answered 400, error 131026");
        assert_eq!(reason.summary(), "whatsapp answered 400, error 131026");
        let debug = format!("{reason:?}");
        assert!(!debug.contains("4915112345678"), "{debug}");
        assert_eq!(
            reason.recorded(),
            "whatsapp answered 400, error 131026: (#131026) +4915112345678 is not a WhatsApp user"
        );
        let noted = reason.noting(" (gave up after 3 attempts)");
        assert_eq!(
            noted.to_string(),
            "whatsapp answered 400, error 131026 (gave up after 3 attempts)"
        );
        assert!(
            noted
                .said()
                .is_some_and(|said| said.contains("4915112345678"))
        );
        assert_eq!(Reason::provider("viber status 6", "  ").said(), None);
        assert_eq!(
            Reason::ours("egress is shutting down").recorded(),
            "egress is shutting down"
        );
        let empty = ProviderResponse {
            status: 429,
            ..ProviderResponse::default()
        };
        assert_eq!(
            empty.body_reason("whatsapp answered 429".to_owned()),
            Reason::ours("whatsapp answered 429: no body")
        );
    }

    #[test]
    fn reasons_are_cut_on_a_char_boundary() {
        let long = "ü".repeat(1000);
        let cut = truncate(&long);
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(truncate("short"), "short");
    }

    #[test]
    fn joins_urls_with_one_slash() {
        assert_eq!(
            join("http://h/v21.0/", "/123/messages"),
            "http://h/v21.0/123/messages"
        );
        assert_eq!(join("http://h", "send_message"), "http://h/send_message");
    }

    #[test]
    fn request_debug_hides_url_and_body() {
        let request = ProviderRequest {
            method: Method::POST,
            url: "https://api.telegram.org/bot123:SECRET/sendMessage".to_owned(),
            headers: HeaderMap::new(),
            body: Bytes::from_static(b"{\"text\":\"my serial\"}"),
        };
        let shown = format!("{request:?}");
        assert!(
            !shown.contains("SECRET") && !shown.contains("serial"),
            "{shown}"
        );
    }
}
