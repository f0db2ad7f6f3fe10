//! The customer's own ledger: `helpline.<region>.customer.<pseudonym>`, facts about a
//! customer on one channel that outlive their tickets. Today one kind, their consent to
//! notifications ([`ConsentChanged`]), each event carrying the whole consent after it:
//! reading the consent is one Direct Get of the subject's last message, and a change is
//! appended only if nobody changed it since (`Nats-Expected-Last-Subject-Sequence`).
//!
//! Nothing in it is personal (the subject and envelope name the customer by pseudonym),
//! so an opt-out outlives an erasure: a customer who said stop stays stopped.

use std::time::SystemTime;

use helpline_domain::Channel;
use helpline_domain::notify::{Answer, Consent, ConsentChanged, ConsentSource, Scope};
use helpline_proto::v1 as pb;
use prost::Message;
use uuid::Uuid;

use crate::EventStore;
use crate::append::{LEDGER_TRIES, ledger_kept_changing};
use crate::codec::{self, CodecError};
use crate::error::StoreError;
use crate::seal::CustomerId;

/// A customer's consent as their ledger says, and the ledger's last sequence (0: empty).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoredConsent {
    pub consent: Consent,
    pub sequence: u64,
}

impl EventStore {
    /// The customer's consent: the latest `ConsentChanged` of their ledger, or nothing
    /// said yet. One Direct Get.
    pub async fn consent(&self, customer: &CustomerId) -> Result<StoredConsent, StoreError> {
        let subject = self.layout().customer_subject(customer);
        let Some(message) = self.last_on_subject(&subject).await? else {
            return Ok(StoredConsent {
                consent: Consent::default(),
                sequence: 0,
            });
        };
        let changed = decode(&message.payload).map_err(|e| {
            StoreError::unavailable(format!("{subject} holds an unreadable event: {e}"))
        })?;
        Ok(StoredConsent {
            consent: changed.consent,
            sequence: message.sequence,
        })
    }

    /// Applies a consent signal to the customer's ledger: appends the change, or nothing
    /// when the consent already says so. Returns the consent after it, and whether it
    /// changed.
    pub async fn change_consent(
        &self,
        channel: Channel,
        customer: &CustomerId,
        signal: ConsentSignal,
        causation_id: &str,
    ) -> Result<(Consent, bool), StoreError> {
        let subject = self.layout().customer_subject(customer);
        for _ in 0..LEDGER_TRIES {
            let stored = self.consent(customer).await?;
            let Some(changed) = stored
                .consent
                .apply(signal.scope, signal.granted, signal.source)
            else {
                return Ok((stored.consent, false));
            };
            let payload = encode(
                self.layout().region(),
                channel,
                customer,
                &changed,
                causation_id,
                SystemTime::now(),
            );
            if self
                .append_to_ledger(&subject, "ConsentChanged", payload, stored.sequence)
                .await?
            {
                tracing::info!(
                    %customer,
                    channel = channel.as_str(),
                    granted = signal.granted,
                    scope = ?signal.scope,
                    source = signal.source.as_str(),
                    "consent changed"
                );
                return Ok((changed.consent, true));
            }
        }
        Err(ledger_kept_changing(&subject))
    }
}

/// What someone said about notifications: stop or start, for all or marketing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConsentSignal {
    pub scope: Scope,
    pub granted: bool,
    pub source: ConsentSource,
}

/// Encodes a `ConsentChanged` in its `CustomerEnvelope`.
pub fn encode(
    region: &str,
    channel: Channel,
    customer: &CustomerId,
    changed: &ConsentChanged,
    causation_id: &str,
    occurred_at: SystemTime,
) -> Vec<u8> {
    let answer = answer_to_proto;
    pb::CustomerEnvelope {
        event_id: Uuid::now_v7().to_string(),
        region: region.to_owned(),
        customer_id: customer.to_string(),
        channel: codec::channel_to_proto(channel).into(),
        occurred_at: Some(prost_types::Timestamp::from(occurred_at)),
        causation_id: causation_id.to_owned(),
        event: Some(pb::customer_envelope::Event::ConsentChanged(
            pb::ConsentChanged {
                notifications: answer(changed.consent.notifications).into(),
                marketing: answer(changed.consent.marketing).into(),
                scope: match changed.scope {
                    Scope::All => pb::ConsentScope::All,
                    Scope::Marketing => pb::ConsentScope::Marketing,
                }
                .into(),
                granted: changed.granted,
                source: match changed.source {
                    ConsentSource::CustomerWords => pb::ConsentSource::CustomerWords,
                    ConsentSource::Provider => pb::ConsentSource::Provider,
                    ConsentSource::Brand => pb::ConsentSource::Brand,
                }
                .into(),
            },
        )),
    }
    .encode_to_vec()
}

/// A consent answer as the contracts write it.
pub fn answer_to_proto(answer: Answer) -> pb::ConsentAnswer {
    match answer {
        Answer::Unknown => pb::ConsentAnswer::Unspecified,
        Answer::Given => pb::ConsentAnswer::Given,
        Answer::Withdrawn => pb::ConsentAnswer::Withdrawn,
    }
}

/// Reads a `ConsentChanged` from its `CustomerEnvelope`.
pub fn decode(bytes: &[u8]) -> Result<ConsentChanged, CodecError> {
    let envelope = pb::CustomerEnvelope::decode(bytes)?;
    let Some(pb::customer_envelope::Event::ConsentChanged(changed)) = envelope.event else {
        return Err(CodecError::Missing {
            field: "customer_envelope.event",
        });
    };
    let invalid = |field: &'static str, value: i32| CodecError::Invalid {
        field,
        reason: format!("{value} is out of range"),
    };
    let answer = |value: i32, field: &'static str| match pb::ConsentAnswer::try_from(value) {
        Ok(pb::ConsentAnswer::Unspecified) => Ok(Answer::Unknown),
        Ok(pb::ConsentAnswer::Given) => Ok(Answer::Given),
        Ok(pb::ConsentAnswer::Withdrawn) => Ok(Answer::Withdrawn),
        Err(_) => Err(invalid(field, value)),
    };
    Ok(ConsentChanged {
        consent: Consent {
            notifications: answer(changed.notifications, "consent_changed.notifications")?,
            marketing: answer(changed.marketing, "consent_changed.marketing")?,
        },
        scope: match pb::ConsentScope::try_from(changed.scope) {
            Ok(pb::ConsentScope::All) => Scope::All,
            Ok(pb::ConsentScope::Marketing) => Scope::Marketing,
            _ => return Err(invalid("consent_changed.scope", changed.scope)),
        },
        granted: changed.granted,
        source: match pb::ConsentSource::try_from(changed.source) {
            Ok(pb::ConsentSource::CustomerWords) => ConsentSource::CustomerWords,
            Ok(pb::ConsentSource::Provider) => ConsentSource::Provider,
            Ok(pb::ConsentSource::Brand) => ConsentSource::Brand,
            _ => return Err(invalid("consent_changed.source", changed.source)),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consent_change_round_trips() {
        let customer = CustomerId::parse(&"ab".repeat(16))
            .unwrap_or_else(|| panic!("a pseudonym is 32 hex digits"));
        for (scope, granted, source) in [
            (Scope::All, false, ConsentSource::CustomerWords),
            (Scope::All, true, ConsentSource::Brand),
            (Scope::Marketing, false, ConsentSource::Provider),
            (Scope::Marketing, true, ConsentSource::Brand),
        ] {
            let Some(changed) = Consent::default().apply(scope, granted, source) else {
                panic!("a first signal changes the consent");
            };
            let bytes = encode(
                "de",
                Channel::Telegram,
                &customer,
                &changed,
                "cause",
                SystemTime::now(),
            );
            assert_eq!(decode(&bytes).ok(), Some(changed));
        }
        assert!(decode(b"\xff\xff").is_err());
    }
}
