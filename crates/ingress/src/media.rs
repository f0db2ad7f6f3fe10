//! Attachments: fetched from the provider and kept in the region's object store, so that
//! events carry a reference, never the bytes.
//!
//! How each provider hands out media (CHANNELS.md): WhatsApp gives a media id, resolved
//! with `GET {api}/{media-id}` (Bearer) to a URL that takes the same Bearer token; Telegram
//! gives a `file_id`, resolved with `getFile` to a path under `{api}/file/bot<token>/`;
//! Messenger, Viber and the web chat give a URL. Bodies over the cap are not kept: the
//! event then carries an empty object name.

use std::time::Duration;

use async_nats::jetstream::object_store::{self, ObjectStore};
use futures::StreamExt;
use helpline_domain::Channel;
use helpline_eventstore::{CustomerId, EventStore};
use serde::Deserialize;

use crate::secret::Secret;

/// What was kept of one attachment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredMedia {
    /// Name in the media bucket; empty when the attachment was over the cap.
    pub object: String,
    pub size_bytes: u64,
    pub mime_type: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("media for {channel} cannot be fetched: {reason}")]
    Fetch {
        channel: &'static str,
        reason: String,
    },
    #[error("media store: {0}")]
    Store(String),
}

/// Credentials and endpoints for fetching media, per channel.
#[derive(Clone, Debug, Default)]
pub struct MediaSources {
    pub whatsapp: Option<(String, Secret)>,
    pub telegram: Option<(String, Secret)>,
}

#[derive(Clone)]
pub struct MediaFetcher {
    http: reqwest::Client,
    bucket: ObjectStore,
    /// Seals each attachment under its customer's key before it is stored.
    store: EventStore,
    sources: MediaSources,
    max_bytes: u64,
}

impl std::fmt::Debug for MediaFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaFetcher")
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl MediaFetcher {
    /// Creates the `helpline-<region>-media` object store if it is not there yet.
    pub async fn new(
        store: &EventStore,
        sources: MediaSources,
        max_bytes: u64,
    ) -> Result<Self, MediaError> {
        let js = store.jetstream();
        let name = format!("helpline-{}-media", store.layout().region());
        let bucket = match js.get_object_store(&name).await {
            Ok(bucket) => bucket,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: name,
                    description: Some("attachments customers sent".to_owned()),
                    num_replicas: store.config().replicas,
                    ..Default::default()
                })
                .await
                .map_err(|e| MediaError::Store(e.to_string()))?,
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| MediaError::Store(e.to_string()))?;
        Ok(Self {
            http,
            bucket,
            store: store.clone(),
            sources,
            max_bytes,
        })
    }

    /// Fetches `provider_media` and stores it as `object`, sealed under `customer`'s key
    /// (so erasing the customer erases the attachment too).
    pub async fn fetch(
        &self,
        channel: Channel,
        customer: &CustomerId,
        provider_media: &str,
        object: &str,
    ) -> Result<StoredMedia, MediaError> {
        let fail = |reason: String| MediaError::Fetch {
            channel: channel.as_str(),
            reason,
        };
        let request = match channel {
            Channel::WhatsApp => {
                let (api, token) = self
                    .sources
                    .whatsapp
                    .as_ref()
                    .ok_or_else(|| fail("no access token configured".to_owned()))?;
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
                .map_err(|e| fail(e.without_url().to_string()))?;
                self.http.get(lookup.url).bearer_auth(token.expose())
            }
            Channel::Telegram => {
                let (api, token) = self
                    .sources
                    .telegram
                    .as_ref()
                    .ok_or_else(|| fail("no bot token configured".to_owned()))?;
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
                .map_err(|e| fail(e.without_url().to_string()))?;
                self.http.get(format!(
                    "{api}/file/bot{}/{}",
                    token.expose(),
                    file.result.file_path
                ))
            }
            _ => self.http.get(provider_media),
        };
        let response = request
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| fail(e.without_url().to_string()))?;
        let mime_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if response
            .content_length()
            .is_some_and(|len| len > self.max_bytes)
        {
            return Ok(self.too_large(response.content_length().unwrap_or_default(), mime_type));
        }
        let mut bytes = Vec::new();
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| fail(e.without_url().to_string()))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() as u64 > self.max_bytes {
                return Ok(self.too_large(bytes.len() as u64, mime_type));
            }
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
        Ok(StoredMedia {
            object: object.to_owned(),
            size_bytes,
            mime_type,
        })
    }

    fn too_large(&self, size_bytes: u64, mime_type: Option<String>) -> StoredMedia {
        tracing::warn!(
            size_bytes,
            cap = self.max_bytes,
            "attachment over the cap not kept"
        );
        StoredMedia {
            object: String::new(),
            size_bytes,
            mime_type,
        }
    }
}

/// Sends a lookup request (a WhatsApp media id, a Telegram `getFile`) and reads its JSON
/// answer; a non-2xx answer is an error.
async fn read_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
) -> Result<T, reqwest::Error> {
    request.send().await?.error_for_status()?.json().await
}
