//! The `helpline.v1.Notifications` API, for supervisors and admins: the brand's systems
//! sign in as one.

use std::sync::Arc;

use helpline_auth::{AuthKey, caller};
use helpline_domain::notify::{Consent, Scope};
use helpline_domain::{Channel, TicketId};
use helpline_eventstore::codec::channel_from_proto_value;
use helpline_eventstore::consent::answer_to_proto;
use helpline_proto::v1 as pb;
use helpline_proto::v1::notifications_server::{
    Notifications as NotificationsApi, NotificationsServer,
};
use helpline_region::{RegionConfig, Role};
use tonic::{Request, Response, Status};

use crate::error::NotifyError;
use crate::notifier::{Notified, Notifier, NotifyRequest, Recipient};

/// The Notifications API: every call needs a bearer token signed with `key` of someone
/// the region's directory names supervisor or admin (the lower of token and directory
/// role counts).
pub fn grpc_service(
    notifier: Notifier,
    key: AuthKey,
    region: Arc<RegionConfig>,
) -> NotificationsServer<impl NotificationsApi> {
    NotificationsServer::new(Api {
        notifier,
        key,
        region,
    })
}

struct Api {
    notifier: Notifier,
    key: AuthKey,
    region: Arc<RegionConfig>,
}

impl Api {
    /// The caller's id, or why not: no or a bad token is `UNAUTHENTICATED`, an agent
    /// `PERMISSION_DENIED`.
    fn authorised<T>(&self, request: &Request<T>) -> Result<String, Status> {
        let (agent, role) = caller(&self.key, request, &self.region)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        if role < Role::Supervisor {
            return Err(Status::permission_denied(format!(
                "{} is an agent; notifications are sent by supervisors and admins (and the brand's systems signed in as one)",
                agent.id
            )));
        }
        Ok(agent.id.to_string())
    }
}

fn channel(contact: &pb::Contact) -> Result<Channel, NotifyError> {
    channel_from_proto_value(contact.channel)
        .map_err(|reason| NotifyError::invalid("contact.channel", reason))?
        .ok_or_else(|| NotifyError::invalid("contact.channel", "name the channel"))
}

fn consent(consent: Consent) -> pb::Consent {
    pb::Consent {
        notifications: answer_to_proto(consent.notifications).into(),
        marketing: answer_to_proto(consent.marketing).into(),
    }
}

#[tonic::async_trait]
impl NotificationsApi for Api {
    async fn notify(
        &self,
        request: Request<pb::NotifyRequest>,
    ) -> Result<Response<pb::NotifyResponse>, Status> {
        let caller = self.authorised(&request)?;
        let request = request.into_inner();
        let recipient = match request.recipient {
            Some(pb::notify_request::Recipient::Contact(contact)) => Recipient::Contact {
                channel: channel(&contact)?,
                address: contact.address,
            },
            Some(pb::notify_request::Recipient::TicketId(id)) => Recipient::Ticket(TicketId(
                uuid::Uuid::parse_str(id.trim())
                    .map_err(|e| NotifyError::invalid("ticket_id", e.to_string()))?,
            )),
            None => {
                return Err(
                    NotifyError::invalid("recipient", "give a contact or a ticket_id").into(),
                );
            }
        };
        tracing::debug!(%caller, template = %request.template, "notification requested");
        let notified = self
            .notifier
            .notify(NotifyRequest {
                recipient,
                template: request.template,
                parameters: request.parameters.into_iter().collect(),
                language: Some(request.language),
                idempotency_key: request.idempotency_key,
            })
            .await?;
        let outcome = match notified {
            Notified::Queued {
                ticket,
                message,
                way,
                duplicate,
            } => pb::notify_response::Outcome::Queued(pb::NotificationQueued {
                ticket_id: ticket.0.to_string(),
                message_id: message.0.to_string(),
                way: way.map(|way| way.as_str().to_owned()).unwrap_or_default(),
                duplicate,
            }),
            Notified::Refused(refused) => {
                pb::notify_response::Outcome::Refused(pb::NotificationRefused {
                    code: refused.code().to_owned(),
                    reason: refused.to_string(),
                })
            }
        };
        Ok(Response::new(pb::NotifyResponse {
            outcome: Some(outcome),
        }))
    }

    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> Result<Response<pb::RecordConsentResponse>, Status> {
        let caller = self.authorised(&request)?;
        let request = request.into_inner();
        let contact = request
            .contact
            .ok_or_else(|| NotifyError::invalid("contact", "name the customer's contact"))?;
        let scope = if request.marketing_only {
            Scope::Marketing
        } else {
            Scope::All
        };
        let (after, changed) = self
            .notifier
            .record_consent(
                channel(&contact)?,
                &contact.address,
                scope,
                request.granted,
                &format!("notifications-api:{caller}"),
            )
            .await?;
        Ok(Response::new(pb::RecordConsentResponse {
            consent: Some(consent(after)),
            changed,
        }))
    }

    async fn get_consent(
        &self,
        request: Request<pb::GetConsentRequest>,
    ) -> Result<Response<pb::GetConsentResponse>, Status> {
        self.authorised(&request)?;
        let contact = request
            .into_inner()
            .contact
            .ok_or_else(|| NotifyError::invalid("contact", "name the customer's contact"))?;
        let recorded = self
            .notifier
            .consent(channel(&contact)?, &contact.address)
            .await?;
        Ok(Response::new(pb::GetConsentResponse {
            consent: Some(consent(recorded)),
        }))
    }
}
