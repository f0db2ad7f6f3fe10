//! Batch Direct Get: read one subject's messages after a sequence without a consumer.
//!
//! async-nats has no helper for the batch form, so this speaks the protocol: a request
//! `{"seq": S, "next_by_subj": SUBJ, "batch": N}` on `$JS.API.DIRECT.GET.<STREAM>` with a
//! reply inbox; the server answers with one message per stored message and ends with an
//! empty status-204 message whose `Nats-Num-Pending` says whether more remain.

use std::time::Duration;

use async_nats::{HeaderMap, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;

use crate::error::StoreError;

/// Messages requested per round trip.
const BATCH: u64 = 256;

/// One stored message as Direct Get returns it.
#[derive(Clone, Debug)]
pub(crate) struct RawMessage {
    pub subject: String,
    pub sequence: u64,
    pub headers: HeaderMap,
    pub payload: Bytes,
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    seq: u64,
    next_by_subj: &'a str,
    batch: u64,
}

/// Every message on `subject` with a sequence above `after`, in order.
pub(crate) async fn messages_after(
    client: &async_nats::Client,
    stream: &str,
    subject: &str,
    after: u64,
    timeout: Duration,
) -> Result<Vec<RawMessage>, StoreError> {
    let api = format!("$JS.API.DIRECT.GET.{stream}");
    let mut out = Vec::new();
    let mut next = after.saturating_add(1);
    loop {
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(StoreError::unavailable)?;
        let request = serde_json::to_vec(&BatchRequest {
            seq: next,
            next_by_subj: subject,
            batch: BATCH,
        })
        .map_err(StoreError::unavailable)?;
        client
            .publish_with_reply(api.clone(), inbox, request.into())
            .await
            .map_err(StoreError::unavailable)?;

        let mut pending = 0;
        loop {
            let reply = tokio::time::timeout(timeout, replies.next())
                .await
                .map_err(|_| StoreError::unavailable(format!("direct get on {subject} timed out")))?
                .ok_or_else(|| StoreError::unavailable("connection closed during direct get"))?;
            match reply.status {
                None => {
                    let headers = reply.headers.unwrap_or_default();
                    let sequence = header_u64(&headers, "Nats-Sequence").ok_or_else(|| {
                        StoreError::unavailable("direct get reply without Nats-Sequence")
                    })?;
                    next = sequence.saturating_add(1);
                    out.push(RawMessage {
                        subject: header_str(&headers, "Nats-Subject")
                            .unwrap_or(subject)
                            .to_owned(),
                        sequence,
                        headers,
                        payload: reply.payload,
                    });
                }
                Some(status) if status == StatusCode::NOT_FOUND => break,
                Some(status) if status.as_u16() == 204 => {
                    pending = reply
                        .headers
                        .as_ref()
                        .and_then(|h| header_u64(h, "Nats-Num-Pending"))
                        .unwrap_or(0);
                    break;
                }
                Some(status) => {
                    return Err(StoreError::unavailable(format!(
                        "direct get on {subject} answered {status}: {}",
                        reply.description.unwrap_or_default()
                    )));
                }
            }
        }
        if pending == 0 {
            return Ok(out);
        }
    }
}

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.as_str())
}

pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|value| value.parse().ok())
}
