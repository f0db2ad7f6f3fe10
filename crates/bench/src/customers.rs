//! More customers in the region stream before the rebuild: each a ticket opening sealed
//! under a data key of its own (made in the key bucket as a first message would make it),
//! written by pipelined raw publishes of encoded envelopes. A rebuild then preloads as many
//! keys as there are customers, past the process's key cache limit when there are enough.

use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use futures::stream::{StreamExt as _, TryStreamExt as _};
use helpline_domain::{Channel, TicketId};
use helpline_eventstore::EventStore;
use helpline_eventstore::codec::{self, Sealer};
use serde::Serialize;
use uuid::Uuid;

use super::progress;
use super::tickets::{envelope, opened};

/// Customers being added at once: each waits for its key's create, then its publish's
/// ack, so this many of each are in flight.
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
                let ticket = TicketId(Uuid::now_v7());
                let event = opened(ticket, n);
                let customer = store.customer_id(Channel::WhatsApp, &format!("4917{n:09}"));
                let key = store.customer_key(&customer).await?;
                let sealer = Some(Sealer {
                    customer: &customer,
                    key: &key,
                });
                let payload = codec::encode(&envelope(ticket, &region), &event, sealer)?;
                let ack = js
                    .publish(layout.ticket_subject(ticket), Bytes::from(payload))
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
