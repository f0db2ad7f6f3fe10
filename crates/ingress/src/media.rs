//! Attachments: fetched from the provider after the customer's message is in the log, and
//! kept in the region's object store, so that events carry a reference, never the bytes.
//!
//! A webhook appends the customer's message with the provider's reference to the
//! attachment ([`Media::provider_media`], sealed like every personal field) and is
//! answered `200`: nothing on the way to the `200` waits for a provider's media server.
//! The durable consumer [`MEDIA_CONSUMER`] then reads every `CustomerMessageReceived` whose
//! attachment awaits fetching, fetches it ([`MediaFetcher`]), stores it sealed under the
//! customer's key as the object named by the message id, and records the outcome through
//! [`EventStore::react`] (so once, whatever the redeliveries): `AttachmentStored`, or
//! `AttachmentNotFetched` with a reason — at once when retrying cannot help (a `4xx`, an
//! attachment over `ingress.max_media_bytes`), else after the consumer's last delivery.
//! A failed fetch is retried by the consumer's delayed redelivery, so a crash or restart
//! in between loses nothing, and the consumer has a retry policy of its own
//! ([`MediaConfig`]): a media server can be down for minutes, longer than the log's
//! other consumers wait for anything.
//!
//! How each provider hands out media (CHANNELS.md): WhatsApp gives a media id, resolved
//! with `GET {api}/{media-id}` (Bearer) to a URL that takes the same Bearer token; Telegram
//! gives a `file_id`, resolved with `getFile` to a path under `{api}/file/bot<token>/`;
//! Messenger, Viber and the web chat give a URL.
//!
//! **Invariants.** A reason recorded or logged never holds a URL (Telegram's holds the bot
//! token, others may name the customer) or content: only the provider's status or the cap.
//! A message stored before attachments were fetched afterwards (its object set) is never
//! fetched again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::object_store::{self, ObjectStore};
use futures::StreamExt;
use helpline_domain::{AttachmentFetch, Channel, Command, Event, Media, MessageBody, MessageId};
use helpline_eventstore::{Cause, CustomerId, EventStore, HandlerError, Reacted, StoredEvent};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::media_policy::{MediaHosts, NotPublic, PublicResolver, Reach};
use helpline_channels::{Secret, apple};

/// The durable consumer that fetches customers' attachments; `media-replay` reads what an
/// operator sends back from its dead letters.
pub const MEDIA_CONSUMER: &str = "media";

/// What was kept of one attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMedia {
    /// Name in the media bucket.
    pub object: String,
    pub size_bytes: u64,
    /// As the provider served it, when it said.
    pub mime_type: Option<String>,
}

/// What came of one fetch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    Stored(StoredMedia),
    /// Larger than the cap: not kept.
    TooLarge {
        size_bytes: u64,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// The provider did not hand the attachment over. `reason` names its status or the
    /// network's failure, never a URL.
    #[error("media for {channel} cannot be fetched: {reason}")]
    Fetch {
        channel: &'static str,
        reason: String,
        /// Another try may succeed (the network, a `5xx`, `408`, `429`).
        retryable: bool,
    },
    #[error("media store: {0}")]
    Store(String),
    #[error("{0}")]
    Config(String),
}

/// Credentials and endpoints for fetching media, per channel.
#[derive(Clone, Debug, Default)]
pub struct MediaSources {
    pub whatsapp: Option<(String, Secret)>,
    pub telegram: Option<(String, Secret)>,
    /// Apple's MSP gateway, which turns an attachment's reference into a download URL.
    pub apple: Option<apple::AppleConfig>,
    /// Where each channel's attachment URLs may point ([`crate::media_policy`]); a
    /// channel without a list fetches from nowhere.
    pub hosts: HashMap<Channel, MediaHosts>,
}

/// How the media consumer fetches and how long it keeps trying.
#[derive(Clone, Debug)]
pub struct MediaConfig {
    pub sources: MediaSources,
    /// The largest attachment kept, in bytes (`ingress.max_media_bytes`).
    pub max_bytes: u64,
    /// The most bytes of attachments one ticket keeps (`ingress.max_media_bytes_per_ticket`).
    pub max_bytes_per_ticket: u64,
    /// The media bucket's own limit (`ingress.media_store_max_bytes`), so attachments can
    /// never take the room the event log needs.
    pub store_max_bytes: u64,
    /// Deliveries of a message whose fetch keeps failing before it is recorded as not
    /// fetched (`ingress.media_fetch_attempts`).
    pub attempts: u32,
    /// Delay before the second try, doubled per try up to the consumer's cap of 30 s
    /// (`ingress.media_retry_backoff_ms`).
    pub retry_backoff: Duration,
}

/// Redirects followed for one attachment, each checked like the first URL.
const MAX_REDIRECTS: usize = 3;

#[derive(Clone)]
pub struct MediaFetcher {
    /// For the provider APIs helpline is configured with (WhatsApp's media lookup,
    /// Telegram's files): trusted endpoints.
    http: reqwest::Client,
    /// For URLs a message or a lookup names, at public addresses only; follows no
    /// redirect by itself.
    public: reqwest::Client,
    /// For URLs of an origin the operator named; follows no redirect by itself.
    named: reqwest::Client,
    bucket: ObjectStore,
    /// Seals each attachment under its customer's key before it is stored.
    store: EventStore,
    sources: MediaSources,
}

impl std::fmt::Debug for MediaFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFetcher").finish_non_exhaustive()
    }
}

impl MediaFetcher {
    /// Creates the `helpline-<region>-media` object store if it is not there yet.
    pub async fn new(
        store: &EventStore,
        sources: MediaSources,
        store_max_bytes: u64,
    ) -> Result<Self, MediaError> {
        let js = store.jetstream();
        let name = store.layout().media_bucket();
        let bucket = match js.get_object_store(&name).await {
            Ok(bucket) => bucket,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: name,
                    description: Some("attachments customers sent".to_owned()),
                    num_replicas: store.config().replicas,
                    max_bytes: i64::try_from(store_max_bytes).unwrap_or(i64::MAX),
                    ..Default::default()
                })
                .await
                .map_err(|e| MediaError::Store(e.to_string()))?,
        };
        let client = || {
            reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(5))
                .timeout(Duration::from_secs(30))
        };
        let build = |builder: reqwest::ClientBuilder| {
            builder
                .build()
                .map_err(|e| MediaError::Store(e.to_string()))
        };
        let http = build(client())?;
        // No proxy: a proxy would resolve the name itself, past the check.
        let public = build(
            client()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .dns_resolver(PublicResolver),
        )?;
        let named = build(client().redirect(reqwest::redirect::Policy::none()))?;
        Ok(Self {
            http,
            public,
            named,
            bucket,
            store: store.clone(),
            sources,
        })
    }

    /// Fetches `provider_media` and stores it as `object`, sealed under `customer`'s key
    /// (so erasing the customer erases the attachment too). A retry overwrites the same
    /// object rather than adding one.
    ///
    /// `limit` is the most bytes kept this time (the cap, or what is left of the ticket's
    /// quota when that is less): a larger attachment is [`Fetched::TooLarge`].
    pub async fn fetch(
        &self,
        channel: Channel,
        customer: &CustomerId,
        provider_media: &str,
        object: &str,
        limit: u64,
    ) -> Result<Fetched, MediaError> {
        let fail = |step: &str, error: reqwest::Error| {
            let (reason, retryable) = failure(&error);
            MediaError::Fetch {
                channel: channel.as_str(),
                reason: format!("{step}: {reason}"),
                retryable,
            }
        };
        let unconfigured = |what: &str| MediaError::Fetch {
            channel: channel.as_str(),
            reason: format!("no {what} configured"),
            retryable: false,
        };
        // Apple's attachments come encrypted, with the key in their reference.
        let mut opening: Option<apple::AttachmentRef> = None;
        let response = match channel {
            Channel::WhatsApp => {
                let (api, token) = self
                    .sources
                    .whatsapp
                    .as_ref()
                    .ok_or_else(|| unconfigured("access token"))?;
                #[derive(Deserialize)]
                struct Lookup {
                    url: String,
                }
                let lookup: Lookup = read_json(
                    self.http
                        .get(format!("{api}/{provider_media}"))
                        .bearer_auth(token.expose()),
                )
                .await
                .map_err(|e| fail("media id lookup", e))?;
                // The lookup names the URL, and the URL gets the access token: only to
                // the channel's media hosts.
                self.download(channel, &lookup.url, Some(token)).await?
            }
            Channel::Telegram => {
                let (api, token) = self
                    .sources
                    .telegram
                    .as_ref()
                    .ok_or_else(|| unconfigured("bot token"))?;
                #[derive(Deserialize)]
                struct File {
                    file_path: String,
                }
                #[derive(Deserialize)]
                struct GetFile {
                    result: File,
                }
                let file: GetFile = read_json(
                    self.http
                        .get(format!("{api}/bot{}/getFile", token.expose()))
                        .query(&[("file_id", provider_media)]),
                )
                .await
                .map_err(|e| fail("getFile", e))?;
                self.http
                    .get(format!(
                        "{api}/file/bot{}/{}",
                        token.expose(),
                        file.result.file_path
                    ))
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| fail("download", e))?
            }
            Channel::AppleMessages => {
                let config = self
                    .sources
                    .apple
                    .as_ref()
                    .ok_or_else(|| unconfigured("apple MSP"))?;
                let reference = apple::AttachmentRef::decode(provider_media).ok_or_else(|| {
                    MediaError::Fetch {
                        channel: channel.as_str(),
                        reason: "not an apple attachment reference".to_owned(),
                        retryable: false,
                    }
                })?;
                let (url, headers) = apple::pre_download(config, &reference, SystemTime::now())
                    .map_err(|reason| MediaError::Fetch {
                        channel: channel.as_str(),
                        reason,
                        retryable: false,
                    })?;
                let mut request = self.http.get(url);
                for (name, value) in headers {
                    request = request.header(name, value);
                }
                let answer = request
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| fail("preDownload", e))?
                    .bytes()
                    .await
                    .map_err(|e| fail("preDownload", e))?;
                let download = apple::download_url(&answer).ok_or_else(|| MediaError::Fetch {
                    channel: channel.as_str(),
                    reason: "preDownload named no download-url".to_owned(),
                    retryable: true,
                })?;
                // The ciphertext: opened below, once its length is checked.
                opening = Some(reference);
                self.download(channel, &download, None).await?
            }
            _ => self.download(channel, provider_media, None).await?,
        };
        let mime_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(size_bytes) = response.content_length().filter(|l| *l > limit) {
            return Ok(Fetched::TooLarge { size_bytes });
        }
        let mut bytes = Vec::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| fail("download", e))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > limit {
                return Ok(Fetched::TooLarge {
                    size_bytes: bytes.len() as u64,
                });
            }
        }
        if let Some(reference) = opening {
            if reference
                .size
                .is_some_and(|size| size != bytes.len() as u64)
            {
                return Err(MediaError::Fetch {
                    channel: channel.as_str(),
                    reason: "the download is not as long as apple said".to_owned(),
                    retryable: true,
                });
            }
            bytes = apple::open_attachment(&reference.key, &bytes).map_err(|reason| {
                MediaError::Fetch {
                    channel: channel.as_str(),
                    reason,
                    retryable: false,
                }
            })?;
        }
        let size_bytes = bytes.len() as u64;
        let sealed = self
            .store
            .seal_attachment(customer, object, &bytes)
            .await
            .map_err(|e| MediaError::Store(e.to_string()))?;
        self.bucket
            .put(object, &mut sealed.as_slice())
            .await
            .map_err(|e| MediaError::Store(e.to_string()))?;
        Ok(Fetched::Stored(StoredMedia {
            object: object.to_owned(),
            size_bytes,
            mime_type,
        }))
    }
}

impl MediaFetcher {
    /// GETs a URL a message or lookup named, if the channel's media hosts admit it, and
    /// follows its redirects the same way; `bearer` goes only to the first URL's host.
    async fn download(
        &self,
        channel: Channel,
        url: &str,
        bearer: Option<&Secret>,
    ) -> Result<reqwest::Response, MediaError> {
        let refused = |reason: String| MediaError::Fetch {
            channel: channel.as_str(),
            reason: format!("refused: {reason}"),
            retryable: false,
        };
        let nowhere = MediaHosts::default();
        let hosts = self.sources.hosts.get(&channel).unwrap_or(&nowhere);
        let mut next = url.to_owned();
        let mut first_host: Option<String> = None;
        for _ in 0..=MAX_REDIRECTS {
            let (url, reach) = hosts.admit(&next).map_err(|r| refused(r.to_string()))?;
            let host = url.host_str().unwrap_or_default().to_owned();
            let client = match reach {
                Reach::PublicOnly => &self.public,
                Reach::Named => &self.named,
            };
            let mut request = client.get(url.clone());
            if let Some(token) = bearer
                && first_host.as_deref().is_none_or(|first| first == host)
            {
                request = request.bearer_auth(token.expose());
            }
            first_host.get_or_insert(host);
            let response = request.send().await.map_err(|error| {
                if resolved_inside(&error) {
                    return refused(NotPublic.to_string());
                }
                let (reason, retryable) = failure(&error);
                MediaError::Fetch {
                    channel: channel.as_str(),
                    reason: format!("download: {reason}"),
                    retryable,
                }
            })?;
            if !response.status().is_redirection() {
                return response.error_for_status().map_err(|error| {
                    let (reason, retryable) = failure(&error);
                    MediaError::Fetch {
                        channel: channel.as_str(),
                        reason: format!("download: {reason}"),
                        retryable,
                    }
                });
            }
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|value| value.to_str().ok())
                .and_then(|location| url.join(location).ok())
                .ok_or_else(|| refused("a redirect without a readable location".to_owned()))?;
            next = location.to_string();
        }
        Err(refused(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

/// Whether a request failed because [`PublicResolver`] found no public address.
fn resolved_inside(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = source {
        if error.downcast_ref::<NotPublic>().is_some() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Runs the media consumer until `shutdown` fires: creates the media bucket if needed,
/// then fetches every customer attachment that awaits it, through the durable consumer
/// [`MEDIA_CONSUMER`].
///
/// Fetching needs a rustls crypto provider installed in the process (the binary installs
/// ring at start).
pub async fn run(
    store: EventStore,
    config: MediaConfig,
    shutdown: CancellationToken,
) -> Result<(), MediaError> {
    let fetcher = MediaFetcher::new(&store, config.sources.clone(), config.store_max_bytes).await?;
    // The consumer's own retry policy: its last delivery is where the attachment is
    // recorded as not fetched.
    let store =
        store.with_consumer_retries(i64::from(config.attempts.max(1)), config.retry_backoff);
    let consumer = Arc::new(MediaConsumer {
        store: store.clone(),
        fetcher,
        max_bytes: config.max_bytes,
        max_bytes_per_ticket: config.max_bytes_per_ticket,
    });
    let subscription = store
        .subscribe(
            MEDIA_CONSUMER,
            &store.layout().all_tickets(),
            move |event| {
                let consumer = Arc::clone(&consumer);
                async move { consumer.handle(event).await }
            },
        )
        .await
        .map_err(|e| MediaError::Store(e.to_string()))?;
    tracing::info!(consumer = MEDIA_CONSUMER, "media consumer running");
    shutdown.cancelled().await;
    subscription.stop().await;
    tracing::info!(consumer = MEDIA_CONSUMER, "media consumer stopped");
    Ok(())
}

struct MediaConsumer {
    store: EventStore,
    fetcher: MediaFetcher,
    max_bytes: u64,
    max_bytes_per_ticket: u64,
}

impl MediaConsumer {
    async fn handle(&self, event: StoredEvent) -> Result<(), HandlerError> {
        let Event::CustomerMessageReceived {
            message,
            body: MessageBody::Media(media),
            ..
        } = &event.event
        else {
            return Ok(());
        };
        // Messages stored before attachments were fetched afterwards carry their object.
        if !media.awaits_fetch() {
            return Ok(());
        }
        let ticket = event.meta.ticket;
        let loaded = self.store.load(ticket).await?;
        if loaded.ticket.attachments.get(message) != Some(&AttachmentFetch::Awaited) {
            tracing::debug!(ticket = %ticket, message_id = %message, "attachment already recorded");
            return Ok(());
        }
        let (Ok(reference), Some(customer), Some(channel)) = (
            media.provider_media.read(),
            event.meta.customer.as_ref(),
            loaded.ticket.customer.as_ref().map(|c| c.channel),
        ) else {
            // Erased since (the reference no longer opens): there is nothing to fetch,
            // and an erased ticket takes no outcome.
            tracing::info!(ticket = %ticket, message_id = %message, "attachment of an erased customer not fetched");
            return Ok(());
        };
        let last_delivery = event.delivered >= self.store.config().max_deliver;
        let object = message.0.to_string();
        let room = self
            .max_bytes_per_ticket
            .saturating_sub(loaded.ticket.attachment_bytes);
        let fetched = match room {
            0 => Ok(Fetched::TooLarge { size_bytes: 0 }),
            _ => {
                self.fetcher
                    .fetch(
                        channel,
                        customer,
                        reference,
                        &object,
                        room.min(self.max_bytes),
                    )
                    .await
            }
        };
        let command = match fetched {
            Ok(Fetched::Stored(stored)) => stored_command(*message, media, stored),
            Ok(Fetched::TooLarge { size_bytes }) if size_bytes <= self.max_bytes => {
                tracing::warn!(ticket = %ticket, size_bytes, quota = self.max_bytes_per_ticket, "attachment over the ticket's quota not kept");
                Command::RecordAttachmentNotFetched {
                    message: *message,
                    reason: format!(
                        "the ticket's attachments reached their quota of {} bytes",
                        self.max_bytes_per_ticket
                    ),
                }
            }
            Ok(Fetched::TooLarge { size_bytes }) => {
                tracing::warn!(ticket = %ticket, size_bytes, cap = self.max_bytes, "attachment over the cap not kept");
                Command::RecordAttachmentNotFetched {
                    message: *message,
                    reason: format!(
                        "larger than the cap of {} bytes ({size_bytes} bytes)",
                        self.max_bytes
                    ),
                }
            }
            Err(MediaError::Fetch {
                reason, retryable, ..
            }) if !retryable || last_delivery => {
                tracing::warn!(ticket = %ticket, message_id = %message, %reason, tries = event.delivered, "attachment not fetched");
                let reason = match retryable {
                    true => format!("{reason} (after {} tries)", event.delivered),
                    false => reason,
                };
                Command::RecordAttachmentNotFetched {
                    message: *message,
                    reason,
                }
            }
            Err(error) => return Err(HandlerError::Transient(error.to_string())),
        };
        match self
            .store
            .react(MEDIA_CONSUMER, &Cause::event(&event), |_| {
                vec![command.clone()]
            })
            .await?
        {
            Reacted::Appended { .. } => {
                tracing::info!(ticket = %ticket, message_id = %message, outcome = command.action(), "attachment outcome recorded");
            }
            Reacted::AlreadyDone | Reacted::Nothing => {}
            Reacted::Refused(refusal) => {
                tracing::info!(ticket = %ticket, message_id = %message, %refusal, "attachment outcome not recorded");
            }
        }
        Ok(())
    }
}

/// `AttachmentStored` for what was kept; the webhook's mime type first (the provider's
/// own word on the file), else what the download said.
fn stored_command(message: MessageId, media: &Media, stored: StoredMedia) -> Command {
    let mime_type = match media.mime_type.as_str() {
        "" => stored.mime_type.unwrap_or_default(),
        known => known.to_owned(),
    };
    Command::RecordAttachmentStored {
        message,
        object: stored.object,
        size_bytes: stored.size_bytes,
        mime_type,
    }
}

/// Why a request failed, without its URL, and whether another try may succeed: the
/// network and `5xx`, `408`, `429` may pass; any other `4xx` will not.
fn failure(error: &reqwest::Error) -> (String, bool) {
    if let Some(status) = error.status() {
        let retryable = status.is_server_error()
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS;
        return (format!("provider answered {status}"), retryable);
    }
    let reason = if error.is_timeout() {
        "provider did not answer in time"
    } else if error.is_connect() {
        "provider could not be reached"
    } else if error.is_decode() {
        "provider's answer could not be read"
    } else {
        "the transfer broke off"
    };
    (reason.to_owned(), true)
}

/// Sends a lookup request (a WhatsApp media id, a Telegram `getFile`) and reads its JSON
/// answer; a non-2xx answer is an error.
async fn read_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, reqwest::Error> {
    request.send().await?.error_for_status()?.json().await
}
