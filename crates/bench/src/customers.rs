//! More customers in the region stream before the rebuild: each their first ticket's
//! opening, sealed under a key made ahead and naming its slot, published at expected
//! sequence 0 (the claim a first message makes), written by pipelined raw publishes of
//! encoded envelopes. A rebuild then preloads as many keys as there are customers, past
//! the process's key cache limit when there are enough.

use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use futures::stream::{StreamExt as _, TryStreamExt as _};
use helpline_domain::{Channel, TicketId};
use helpline_eventstore::EventStore;
use helpline_eventstore::chain::first_ticket;
use helpline_eventstore::codec::{self, Sealer};
use serde::Serialize;

use super::progress;
use super::tickets::{envelope, opened};

/// Customers being added at once: this many publishes' acks are in flight.
const CONCURRENCY: usize = 256;
/// Contacts of added customers start here, apart from the webhook phases' `49<pass>…`.
const FIRST_CONTACT: usize = 500_000_000;

#[derive(Debug, Serialize)]
pub(super) struct Added {
    pub customers: usize,
    pub seconds: f64,
    /// Whether all were added before the phase's time cap.
    pub complete: bool,
}

pub(super) async fn add(
    store: &EventStore,
    count: usize,
    cap: std::time::Duration,
) -> anyhow::Result<Added> {
    let bar = progress(count, "add customers")?;
    let js = store.jetstream();
    let layout = store.layout();
    let region = layout.region().to_owned();
    let start = Instant::now();
    let deadline = start + cap;
    let added = futures::stream::iter(0..count)
        .take_while(|_| futures::future::ready(Instant::now() < deadline))
        .map(|i| {
            let region = region.clone();
            async move {
                let n = FIRST_CONTACT + i;
                let customer = store.customer_id(Channel::WhatsApp, &format!("4917{n:09}"));
                let ticket: TicketId = first_ticket(&customer);
                let event = opened(ticket, n);
                let (key, at) = store.claim_customer_key().await?;
                let sealer = Some(Sealer {
                    customer: &customer,
                    key: &key,
                    key_ref: Some(at),
                });
                let payload = codec::encode(&envelope(ticket, &region), &event, sealer)?;
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
                let ack = js
                    .publish_with_headers(
                        layout.ticket_subject(ticket),
                        headers,
                        Bytes::from(payload),
                    )
                    .await
                    .context("cannot publish a customer's ticket opening")?;
                ack.await.context("publish not acknowledged")?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .inspect_ok(|()| bar.inc(1))
        .try_fold(0usize, |added, ()| async move { Ok(added + 1) })
        .await?;
    bar.finish();
    Ok(Added {
        customers: added,
        seconds: start.elapsed().as_secs_f64(),
        complete: added == count,
    })
}
