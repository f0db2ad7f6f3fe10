//! Batch Direct Get: read one subject's messages after a sequence without a consumer.
//!
//! async-nats has no helper for the batch form, so this speaks the protocol: a request
//! `{"seq": S, "next_by_subj": SUBJ, "batch": N}` on `$JS.API.DIRECT.GET.<STREAM>` with a
//! reply inbox; the server answers with one message per stored message and ends with an
//! empty status-204 message whose `Nats-Num-Pending` says whether more remain.
//!
//! The replies of every read come to one subscription per store, `<inbox>.*`, made
//! once: each read gets its own last token and is handed the replies that carry it. A
//! subscription per read would cost a subscribe and an unsubscribe on every load.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_nats::{HeaderMap, Message, StatusCode};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::error::StoreError;

type Waiting = Arc<Mutex<HashMap<u64, mpsc::UnboundedSender<Message>>>>;

/// The store's batch Direct Gets on its event stream, sharing one reply subscription.
#[derive(Debug)]
pub(crate) struct DirectGets {
    client: async_nats::Client,
    api: String,
    inbox: String,
    waiting: Waiting,
    next: AtomicU64,
    dispatch: tokio::task::AbortHandle,
}

impl Drop for DirectGets {
    fn drop(&mut self) {
        self.dispatch.abort();
    }
}

/// A read's place among the waiting ones, given up when the read ends however it ends.
struct Registered<'a> {
    waiting: &'a Waiting,
    token: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.token);
    }
}

impl DirectGets {
    /// Subscribes to the replies of the reads on `stream`'s Direct Get API.
    pub(crate) async fn new(client: &async_nats::Client, stream: &str) -> Result<Self, StoreError> {
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(StoreError::unavailable)?;
        let waiting: Waiting = Arc::default();
        let dispatch = tokio::spawn({
            let waiting = Arc::clone(&waiting);
            async move {
                while let Some(reply) = replies.next().await {
                    let token = reply
                        .subject
                        .rsplit('.')
                        .next()
                        .and_then(|token| token.parse::<u64>().ok());
                    let Some(token) = token else { continue };
                    let waiting = waiting.lock().unwrap_or_else(PoisonError::into_inner);
                    // A read that gave up (timed out) is gone: its late replies are dropped.
                    if let Some(read) = waiting.get(&token) {
                        let _ = read.send(reply);
                    }
                }
            }
        })
        .abort_handle();
        Ok(Self {
            client: client.clone(),
            api: format!("$JS.API.DIRECT.GET.{stream}"),
            inbox,
            waiting,
            next: AtomicU64::new(1),
            dispatch,
        })
    }

    /// Every message on `subject` with a sequence above `after`, in order.
    pub(crate) async fn messages_after(
        &self,
        subject: &str,
        after: u64,
        timeout: Duration,
    ) -> Result<Vec<RawMessage>, StoreError> {
        let mut out = Vec::new();
        let mut next = after.saturating_add(1);
        loop {
            let token = self.next.fetch_add(1, Ordering::Relaxed);
            let (sender, mut replies) = mpsc::unbounded_channel();
            self.waiting
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(token, sender);
            let _registered = Registered {
                waiting: &self.waiting,
                token,
            };
            let request = serde_json::to_vec(&BatchRequest {
                seq: next,
                next_by_subj: subject,
                batch: BATCH,
            })
            .map_err(StoreError::unavailable)?;
            self.client
                .publish_with_reply(
                    self.api.clone(),
                    format!("{}.{token}", self.inbox),
                    request.into(),
                )
                .await
                .map_err(StoreError::unavailable)?;
            let pending = loop {
                let reply = tokio::time::timeout(timeout, replies.recv())
                    .await
                    .map_err(|_| {
                        StoreError::unavailable(format!("direct get on {subject} timed out"))
                    })?
                    .ok_or_else(|| StoreError::unavailable("direct get replies ended"))?;
                match read_reply(reply, subject, &mut out)? {
                    Reply::Message(sequence) => next = sequence.saturating_add(1),
                    Reply::End(remaining) => break remaining,
                }
            };
            if pending == 0 {
                return Ok(out);
            }
        }
    }
}

enum Reply {
    /// A stored message, at this sequence.
    Message(u64),
    /// The end of a batch, with how many messages remain after it.
    End(u64),
}

/// One reply of a batch: a message, kept in `out`, or the batch's end.
fn read_reply(
    reply: Message,
    subject: &str,
    out: &mut Vec<RawMessage>,
) -> Result<Reply, StoreError> {
    match reply.status {
        None => {
            let headers = reply.headers.unwrap_or_default();
            let sequence = header_u64(&headers, "Nats-Sequence")
                .ok_or_else(|| StoreError::unavailable("direct get reply without Nats-Sequence"))?;
            out.push(RawMessage {
                subject: header_str(&headers, "Nats-Subject")
                    .unwrap_or(subject)
                    .to_owned(),
                sequence,
                headers,
                payload: reply.payload,
            });
            Ok(Reply::Message(sequence))
        }
        Some(status) if status == StatusCode::NOT_FOUND => Ok(Reply::End(0)),
        Some(status) if status.as_u16() == 204 => Ok(Reply::End(
            reply
                .headers
                .as_ref()
                .and_then(|h| header_u64(h, "Nats-Num-Pending"))
                .unwrap_or(0),
        )),
        Some(status) => Err(StoreError::unavailable(format!(
            "direct get on {subject} answered {status}: {}",
            reply.description.unwrap_or_default()
        ))),
    }
}

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

pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.as_str())
}

pub(crate) fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name).and_then(|value| value.parse().ok())
}
