//! A client of the AgentDesk API for the terminal: every call carries the agent's bearer
//! token. `helpline demo` and `helpline chat agent` use it.

use std::time::Duration;

use anyhow::{Context as _, bail};
use helpline_domain::TicketId;
use helpline_proto::v1 as pb;
use helpline_proto::v1::agent_desk_client::AgentDeskClient;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel as GrpcChannel;

/// How long the stream may stay silent while a step waits on it.
const STEP: Duration = Duration::from_secs(30);

/// A connection to one of helpline's authenticated APIs: every request carries the
/// bearer token.
pub struct Authorized {
    channel: GrpcChannel,
    authorization: MetadataValue<tonic::metadata::Ascii>,
}

impl Authorized {
    /// Connects to `api` (named in errors) at `url`.
    pub async fn connect(api: &str, url: &str, token: &str) -> anyhow::Result<Self> {
        let channel = GrpcChannel::from_shared(url.to_owned())?
            .connect()
            .await
            .with_context(|| format!("cannot reach the {api} API at {url}"))?;
        Ok(Self {
            channel,
            authorization: format!("Bearer {token}").parse()?,
        })
    }

    pub fn channel(&self) -> GrpcChannel {
        self.channel.clone()
    }

    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }
}

/// The agent's client: every call carries the bearer token.
pub struct AgentDesk {
    client: AgentDeskClient<GrpcChannel>,
    authorized: Authorized,
}

impl AgentDesk {
    pub async fn connect(url: &str, token: &str) -> anyhow::Result<Self> {
        let authorized = Authorized::connect("AgentDesk", url, token).await?;
        Ok(Self {
            client: AgentDeskClient::new(authorized.channel()),
            authorized,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        self.authorized.request(message)
    }

    pub async fn sign_in(&mut self) -> anyhow::Result<pb::SignInResponse> {
        let request = self.request(pb::SignInRequest {});
        Ok(self.client.sign_in(request).await?.into_inner())
    }

    pub async fn watch(&mut self) -> anyhow::Result<Watch> {
        let request = self.request(pb::WatchRequest {});
        Ok(Watch(self.client.watch(request).await?.into_inner()))
    }

    pub async fn accept(&mut self, ticket: TicketId) -> anyhow::Result<()> {
        let request = self.request(pb::AcceptRequest {
            ticket_id: ticket.to_string(),
        });
        self.client.accept(request).await?;
        Ok(())
    }

    pub async fn reply(&mut self, ticket: TicketId, text: &str) -> anyhow::Result<()> {
        let request = self.request(pb::ReplyRequest {
            ticket_id: ticket.to_string(),
            body: Some(pb::MessageBody {
                content: Some(pb::message_body::Content::Text(text.to_owned())),
            }),
            // One per reply typed: should the call be tried again, it is not sent twice.
            request_id: uuid::Uuid::now_v7().to_string(),
            canned_reply: String::new(),
        });
        self.client.reply(request).await?;
        Ok(())
    }

    pub async fn note(&mut self, ticket: TicketId, text: &str) -> anyhow::Result<()> {
        let request = self.request(pb::AddNoteRequest {
            ticket_id: ticket.to_string(),
            text: text.to_owned(),
        });
        self.client.add_note(request).await?;
        Ok(())
    }

    /// Links the ticket's customer to their contact `address` on `channel`; the
    /// customer's contacts after it.
    pub async fn link(
        &mut self,
        ticket: TicketId,
        channel: helpline_domain::Channel,
        address: &str,
    ) -> anyhow::Result<Vec<pb::CustomerContact>> {
        let request = self.request(pb::LinkContactsRequest {
            ticket_id: ticket.to_string(),
            other: Some(pb::OtherContact {
                who: Some(pb::other_contact::Who::Contact(pb::Contact {
                    channel: helpline_eventstore::codec::channel_to_proto(channel).into(),
                    address: address.to_owned(),
                })),
            }),
        });
        Ok(self
            .client
            .link_contacts(request)
            .await?
            .into_inner()
            .contacts)
    }

    /// Takes back the link between the ticket's customer and the contact `customer_id`.
    pub async fn unlink(
        &mut self,
        ticket: TicketId,
        customer_id: &str,
    ) -> anyhow::Result<Vec<pb::CustomerContact>> {
        let request = self.request(pb::UnlinkContactsRequest {
            ticket_id: ticket.to_string(),
            other: Some(pb::OtherContact {
                who: Some(pb::other_contact::Who::CustomerId(customer_id.to_owned())),
            }),
        });
        Ok(self
            .client
            .unlink_contacts(request)
            .await?
            .into_inner()
            .contacts)
    }

    /// The ticket's customer's contacts, each with its tickets.
    pub async fn contacts(&mut self, ticket: TicketId) -> anyhow::Result<Vec<pb::CustomerContact>> {
        let request = self.request(pb::ListLinkedContactsRequest {
            ticket_id: ticket.to_string(),
        });
        Ok(self
            .client
            .list_linked_contacts(request)
            .await?
            .into_inner()
            .contacts)
    }

    pub async fn release(&mut self, ticket: TicketId) -> anyhow::Result<()> {
        let request = self.request(pb::ReleaseRequest {
            ticket_id: ticket.to_string(),
        });
        self.client.release(request).await?;
        Ok(())
    }

    pub async fn resolve(&mut self, ticket: TicketId, summary: &str) -> anyhow::Result<()> {
        let request = self.request(pb::ResolveRequest {
            ticket_id: ticket.to_string(),
            summary: summary.to_owned(),
        });
        self.client.resolve(request).await?;
        Ok(())
    }
}

/// The agent's live stream of offers and ticket events.
pub struct Watch(tonic::Streaming<pb::WatchResponse>);

impl Watch {
    /// The next update, however long it takes; `None` when the stream ended.
    pub async fn recv(&mut self) -> anyhow::Result<Option<pb::WatchResponse>> {
        Ok(self.0.message().await?)
    }

    pub async fn next(&mut self) -> anyhow::Result<pb::WatchResponse> {
        match tokio::time::timeout(STEP, self.0.message()).await {
            Ok(Ok(Some(update))) => Ok(update),
            Ok(Ok(None)) => bail!("the AgentDesk stream ended"),
            Ok(Err(status)) => Err(status.into()),
            Err(_) => bail!("nothing arrived on the AgentDesk stream"),
        }
    }

    pub async fn offer(&mut self, ticket: TicketId) -> anyhow::Result<pb::AgentTicket> {
        loop {
            let update = self.next().await?;
            if let Some(pb::watch_response::Update::Ticket(offer)) = update.update
                && offer.ticket_id == ticket.to_string()
                && !offer.accepted
            {
                return Ok(offer);
            }
        }
    }

    /// Waits for the customer's message `text` on the ticket's live events.
    pub async fn customer_message(&mut self, ticket: TicketId, text: &str) -> anyhow::Result<()> {
        loop {
            let update = self.next().await?;
            if update.ticket_id != ticket.to_string() {
                continue;
            }
            let Some(pb::watch_response::Update::Event(envelope)) = update.update else {
                continue;
            };
            let Some(pb::event_envelope::Event::CustomerMessageReceived(message)) = envelope.event
            else {
                continue;
            };
            let content = message.body.and_then(|body| body.content);
            if matches!(content, Some(pb::message_body::Content::Text(t)) if t == text) {
                return Ok(());
            }
        }
    }
}
