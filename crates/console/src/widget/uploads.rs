//! Files customers attach in the widget. The web chat takes attachments by URL (CHANNELS.md
//! §5), which ingress fetches and keeps; the widget's backend is the site that serves them.
//! A file is kept sealed under the customer's key in `helpline-<region>-widget-uploads`
//! for a day (`Layout::widget_uploads_bucket`), tagged with its session, so only that
//! session's message can name it; ingress fetches it by a URL signed for that one upload.

use std::sync::Arc;

use async_nats::jetstream::object_store::{ObjectMetadata, ObjectStore};
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use helpline_eventstore::{CustomerId, Kept};
use serde::Deserialize;

use super::{Attached, Refusal, TRY_AGAIN, Widget, bearer_session, hmac_sha256, widget_of};
use crate::Console;

/// The metadata key an upload's content type is kept under.
const UPLOAD_MIME: &str = "mime_type";
/// The metadata key naming the session an upload belongs to (a keyed hash, not the id).
const UPLOAD_SESSION: &str = "session";
/// The metadata key naming the customer whose key sealed an upload (their pseudonym).
const UPLOAD_CUSTOMER: &str = "customer";

/// An upload's name: `up_` and 32 hex digits.
pub(super) fn is_upload_name(name: &str) -> bool {
    name.len() == 3 + 32
        && name.starts_with("up_")
        && name[3..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The web chat's kind of attachment for a content type a customer may attach.
fn attachment_kind(mime_type: &str) -> Option<&'static str> {
    let mime_type = mime_type.to_ascii_lowercase();
    if mime_type.starts_with("image/") {
        Some("image")
    } else if mime_type.starts_with("video/") {
        Some("video")
    } else if mime_type.starts_with("audio/") {
        Some("audio")
    } else if mime_type == "application/pdf" || mime_type == "text/plain" {
        Some("document")
    } else {
        None
    }
}

impl Widget {
    /// The uploads bucket (made by `helpline ensure`).
    async fn uploads(&self) -> Result<ObjectStore, Refusal> {
        self.store
            .jetstream()
            .get_object_store(self.store.layout().widget_uploads_bucket())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "widget: the uploads bucket cannot be opened");
                TRY_AGAIN
            })
    }

    /// Which session an upload belongs to, as its metadata names it: a keyed hash, so the
    /// bucket names no session.
    fn session_tag(&self, session: &str) -> String {
        hex::encode(&hmac_sha256(&self.session_key, format!("session {session}").as_bytes())[..16])
    }

    /// The signature an upload's URL carries: only helpline hands out its URL.
    fn upload_signature(&self, name: &str) -> String {
        hex::encode(hmac_sha256(
            &self.session_key,
            format!("upload {name}").as_bytes(),
        ))
    }

    /// The web chat webhook's attachment for an upload of this session: where ingress
    /// fetches it, and what it is. An upload of another session is none of this one's.
    pub(super) async fn attachment(
        &self,
        session: &str,
        attached: &Attached,
    ) -> Result<serde_json::Value, Refusal> {
        let no_such = Refusal(StatusCode::BAD_REQUEST, "no such upload");
        let info = self
            .uploads()
            .await?
            .info(&attached.upload)
            .await
            .map_err(|_| no_such)?;
        if info.metadata.get(UPLOAD_SESSION) != Some(&self.session_tag(session)) {
            return Err(Refusal(StatusCode::BAD_REQUEST, "no such upload"));
        }
        let mime_type = info.metadata.get(UPLOAD_MIME).cloned().unwrap_or_default();
        let mut attachment = serde_json::json!({
            "type": attachment_kind(&mime_type).unwrap_or("document"),
            "url": format!(
                "{}/widget/uploads/{}?sig={}",
                self.settings.upload_base_url.trim_end_matches('/'),
                attached.upload,
                self.upload_signature(&attached.upload)
            ),
            "mime_type": mime_type,
        });
        if let Some(name) = attached
            .file_name
            .as_deref()
            .filter(|n| !n.trim().is_empty())
        {
            attachment["file_name"] = name.chars().take(200).collect::<String>().into();
        }
        Ok(attachment)
    }
}

/// `POST /widget/api/uploads`: a file the customer attaches (the body; its type in
/// `content-type`), sealed under the customer's key and kept for ingress to fetch once
/// the message naming it is sent. Answers its name.
pub(crate) async fn upload(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, Refusal> {
    let widget = widget_of(&console)?;
    let session = bearer_session(widget, &headers)?;
    let mime_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or_default().trim().to_owned())
        .unwrap_or_default();
    if attachment_kind(&mime_type).is_none() {
        return Err(Refusal(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "attach an image, a video, a recording, a PDF or a text file",
        ));
    }
    let bytes = axum::body::to_bytes(body, widget.settings.max_upload_bytes)
        .await
        .map_err(|_| Refusal(StatusCode::PAYLOAD_TOO_LARGE, "the file is too large"))?;
    if bytes.is_empty() {
        return Err(Refusal(StatusCode::BAD_REQUEST, "the file is empty"));
    }
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|_| TRY_AGAIN)?;
    let name = format!("up_{}", hex::encode(random));
    let customer = widget.customer(&session);
    let sealed = widget
        .store
        .seal_kept(Kept::WidgetUpload, &customer, &name, &bytes)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "widget: an upload could not be sealed");
            TRY_AGAIN
        })?;
    let meta = ObjectMetadata {
        name: name.clone(),
        metadata: [
            (UPLOAD_MIME.to_owned(), mime_type),
            (UPLOAD_SESSION.to_owned(), widget.session_tag(&session)),
            (UPLOAD_CUSTOMER.to_owned(), customer.to_string()),
        ]
        .into(),
        ..Default::default()
    };
    widget
        .uploads()
        .await?
        .put(meta, &mut sealed.as_slice())
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "widget: an upload could not be kept");
            TRY_AGAIN
        })?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "upload": name })),
    )
        .into_response())
}

#[derive(Deserialize)]
pub(crate) struct Signed {
    #[serde(default)]
    sig: String,
}

/// `GET /widget/uploads/{name}?sig=…`: an upload, opened, for ingress to fetch; only
/// with the signature the message's webhook carried.
pub(crate) async fn uploaded(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
    Query(Signed { sig }): Query<Signed>,
) -> Result<Response, Refusal> {
    let widget = widget_of(&console)?;
    let not_found = || Refusal(StatusCode::NOT_FOUND, "no such upload");
    let expected = widget.upload_signature(&name);
    if !is_upload_name(&name)
        || !bool::from(subtle::ConstantTimeEq::ct_eq(
            sig.as_bytes(),
            expected.as_bytes(),
        ))
    {
        return Err(not_found());
    }
    let mut object = widget
        .uploads()
        .await?
        .get(&name)
        .await
        .map_err(|_| not_found())?;
    let info = object.info().clone();
    let mut sealed = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut sealed)
        .await
        .map_err(|_| TRY_AGAIN)?;
    let customer = info
        .metadata
        .get(UPLOAD_CUSTOMER)
        .and_then(|c| CustomerId::parse(c))
        .ok_or_else(not_found)?;
    let plain = widget
        .store
        .open_kept(Kept::WidgetUpload, &customer, &name, &sealed)
        .await
        .map_err(|_| TRY_AGAIN)?
        .ok_or(Refusal(StatusCode::GONE, "the customer's data was erased"))?;
    let mime_type = info
        .metadata
        .get(UPLOAD_MIME)
        .cloned()
        .unwrap_or_else(|| "application/octet-stream".to_owned());
    Ok((
        [
            (header::CONTENT_TYPE, mime_type),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        plain,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_customer_attaches_what_the_web_chat_carries_and_nothing_else() {
        assert_eq!(attachment_kind("image/jpeg"), Some("image"));
        assert_eq!(attachment_kind("IMAGE/PNG"), Some("image"));
        assert_eq!(attachment_kind("application/pdf"), Some("document"));
        assert_eq!(attachment_kind("video/mp4"), Some("video"));
        assert_eq!(attachment_kind("application/x-msdownload"), None);
        assert_eq!(attachment_kind("text/html"), None);
        assert!(is_upload_name("up_0123456789abcdef0123456789abcdef"));
        assert!(!is_upload_name("up_../../etc/passwd"));
        assert!(!is_upload_name("wgt_0123456789abcdef0123456789abcdef"));
    }
}
