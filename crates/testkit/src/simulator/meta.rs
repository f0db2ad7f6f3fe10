//! What WhatsApp and Messenger share as Meta Graph APIs: the webhook signature and the
//! Graph error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::state::Shared;
use super::{Webhook, codec, server};
use helpline_domain::Channel;

pub(super) const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// A Meta webhook: JSON with non-ASCII escaped (as Meta writes it), signed with
/// `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app_secret, body)>`.
pub(super) fn signed_webhook(
    channel: Channel,
    app_secret: &str,
    payload: &Value,
    provider_message_id: String,
    customer: &str,
) -> Webhook {
    let body = codec::ascii_json(payload);
    let signature = format!("sha256={}", codec::hmac_hex(app_secret, &body));
    Webhook {
        channel,
        path: format!("/webhooks/{}", channel.as_str()),
        query: None,
        headers: vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("user-agent".to_owned(), "facebookexternalua".to_owned()),
            (SIGNATURE_HEADER.to_owned(), signature),
        ],
        body,
        provider_message_id,
        customer: customer.to_owned(),
    }
}

/// A Graph API error: `{"error":{"message","type","code",…,"fbtrace_id"}}`.
pub(super) struct GraphError {
    pub status: StatusCode,
    pub code: i64,
    pub message: String,
    pub subcode: Option<i64>,
    pub error_data: Option<Value>,
    pub transient: bool,
}

impl GraphError {
    pub fn new(status: StatusCode, code: i64, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            subcode: None,
            error_data: None,
            transient: false,
        }
    }

    /// `(#100) …`: a request Graph cannot take as it is.
    pub fn invalid_parameter(message: &str) -> Self {
        Self::new(StatusCode::BAD_REQUEST, 100, format!("(#100) {message}"))
    }

    /// Graph code 2, answered with `500` and `is_transient`.
    pub fn server_error() -> Self {
        Self {
            transient: true,
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                2,
                "An unexpected error has occurred. Please retry your request later.",
            )
        }
    }

    /// A missing or wrong access token.
    pub fn unauthorized(presented: Option<&str>) -> Self {
        match presented {
            None => Self::new(
                StatusCode::UNAUTHORIZED,
                104,
                "An access token is required to request this resource.",
            ),
            Some(_) => Self::new(
                StatusCode::UNAUTHORIZED,
                190,
                "Invalid OAuth access token - Cannot parse access token",
            ),
        }
    }

    pub fn unknown_path(path: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            2500,
            format!("Unknown path components: /{path}"),
        )
    }

    pub fn respond(self, shared: &Shared) -> Response {
        let mut error = json!({
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "fbtrace_id": format!("A{}", shared.opaque_id()),
        });
        if let Some(object) = error.as_object_mut() {
            if let Some(subcode) = self.subcode {
                object.insert("error_subcode".to_owned(), json!(subcode));
            }
            if let Some(data) = self.error_data {
                object.insert("error_data".to_owned(), data);
            }
            if self.transient {
                object.insert("is_transient".to_owned(), json!(true));
            }
        }
        server::json(self.status, &json!({ "error": error }))
    }
}

/// A fault's status, code and message as a Graph error, for [`server::faulted`].
pub(super) fn reject(status: u16, code: i64, message: &str) -> GraphError {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    GraphError::new(status, code, message)
}

/// Adds `Retry-After` to a Graph error response.
pub(super) fn with_retry_after(response: Response, seconds: u64) -> Response {
    (server::retry_after(seconds), response).into_response()
}

/// The Graph access token: `Authorization: Bearer` or `?access_token=`.
pub(super) fn access_token(request: &server::ApiRequest) -> Option<String> {
    request
        .bearer()
        .map(str::to_owned)
        .or_else(|| request.query_param("access_token"))
}

/// The request body as a JSON object, or the Graph error for it.
pub(super) fn json_object(
    request: &server::ApiRequest,
) -> Result<serde_json::Map<String, Value>, GraphError> {
    if !request.is_json() {
        return Err(GraphError::invalid_parameter(
            "The request body must be application/json",
        ));
    }
    match serde_json::from_slice::<Value>(&request.body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(GraphError::invalid_parameter(
            "The request body must be a JSON object",
        )),
        Err(error) => Err(GraphError::invalid_parameter(&format!(
            "The request body is not valid JSON: {error}"
        ))),
    }
}
