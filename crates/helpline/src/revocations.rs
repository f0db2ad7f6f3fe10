//! Revoked tokens, everywhere within seconds: every process that checks bearer tokens
//! follows the region's revocations bucket (`helpline-<region>-revocations`, written by
//! AgentDesk's `RevokeTokens`) into its [`AuthKey`], which then refuses the agent's tokens
//! issued up to the revocation, and ends their open streams.

use std::time::Duration;

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use helpline_assignment::AuthKey;
use tokio_util::sync::CancellationToken;

/// How long to wait before following the bucket again after it failed.
const RETRY: Duration = Duration::from_secs(2);

/// Loads the revocations there are, then follows the bucket until `shutdown`; a bucket
/// that is missing (`helpline ensure` not run since it was added) or unreachable is
/// tried again every two seconds, said once.
pub async fn follow(
    js: jetstream::Context,
    bucket: String,
    key: AuthKey,
    shutdown: CancellationToken,
) {
    let mut said = false;
    loop {
        let followed = tokio::select! {
            _ = shutdown.cancelled() => return,
            followed = follow_once(&js, &bucket, &key) => followed,
        };
        if let Err(e) = followed
            && !said
        {
            tracing::warn!(%bucket, error = %e, "revocations cannot be followed; trying again");
            said = true;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

async fn follow_once(
    js: &jetstream::Context,
    bucket: &str,
    key: &AuthKey,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let store = js.get_key_value(bucket).await?;
    // Every key's latest value first, then each change as it is written.
    let mut entries = store.watch_all().await?;
    tracing::debug!(%bucket, "following revocations");
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        match entry.operation {
            kv::Operation::Put => {
                match std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                {
                    Some(until) => {
                        key.revoke(&entry.key, until);
                        tracing::info!(agent = %entry.key, until, "agent's tokens revoked");
                    }
                    None => tracing::warn!(agent = %entry.key, "unreadable revocation ignored"),
                }
            }
            kv::Operation::Delete | kv::Operation::Purge => {
                key.reinstate(&entry.key);
                tracing::info!(agent = %entry.key, "agent's revocation lifted");
            }
        }
    }
    Err("the revocations watch ended".into())
}
