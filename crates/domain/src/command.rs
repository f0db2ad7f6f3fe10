//! Commands: what someone asks of a ticket, in the imperative. A command carries every id
//! the resulting events need, so `decide` stays free of clocks and randomness.

use crate::event::{
    CloseReason, Customer, Details, HandoffReason, MessageBody, QuickReply, ReleaseReason,
    StoreReferral, WhatsAppTemplateCall,
};
use crate::ids::{AgentId, MessageId, QueueId, TicketId};
use crate::notify::NotificationKind;
use crate::personal::Personal;

#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    OpenTicket {
        ticket: TicketId,
        customer: Customer,
        language: String,
    },
    ReceiveCustomerMessage {
        message: MessageId,
        provider_message_id: Personal<String>,
        body: MessageBody,
    },
    SendBotMessage {
        message: MessageId,
        body: MessageBody,
        prompt: String,
        choices: Vec<QuickReply>,
    },
    CaptureDetails(Details),
    /// Records that the customer closed the conversation on their side, in any phase.
    RecordConversationClosed,
    /// Records how the customer came in (an entry point's intent and group), once, while
    /// the ticket is open.
    NoteEntryPoint {
        intent: String,
        group: String,
    },
    DetectLanguage {
        language: String,
    },
    RequestHandoff {
        reason: HandoffReason,
        summary: Personal<String>,
    },
    RouteToQueue {
        rule: String,
        queue: QueueId,
    },
    ReferToStore {
        rule: String,
        referral: StoreReferral,
    },
    AssignAgent {
        agent: AgentId,
    },
    AcceptAssignment {
        agent: AgentId,
    },
    SendAgentMessage {
        agent: AgentId,
        message: MessageId,
        body: MessageBody,
    },
    ReleaseTicket {
        agent: AgentId,
        reason: ReleaseReason,
    },
    ResolveTicket {
        agent: AgentId,
        summary: String,
    },
    /// Asks for a rating: the bot's message and the request, together.
    RequestRating {
        message: MessageId,
        body: MessageBody,
        choices: Vec<QuickReply>,
    },
    HandBackToBot {
        agent: AgentId,
    },
    /// A running SLA clock reached a level; recorded once per clock, run and level
    /// (again is no events).
    RecordSlaAlarm {
        clock: crate::sla::SlaClock,
        level: crate::sla::SlaLevel,
        target_secs: u64,
        run_since_ms: u64,
    },
    /// The agent's message `message` (sent in the same command) came from the canned
    /// reply `shortcut`.
    RecordCannedReply {
        agent: AgentId,
        message: MessageId,
        shortcut: String,
    },
    /// An internal note for agents and supervisors; never sent to the customer.
    AddAgentNote {
        agent: AgentId,
        text: Personal<String>,
    },
    /// The agent sends the ticket to another queue (released, then queued there).
    TransferTicket {
        agent: AgentId,
        queue: QueueId,
    },
    /// The brand writes first. With `notice`, Apple's notice about notifications goes
    /// out before it (its message id and text), once per conversation. A notification
    /// already sent (the same message id: the request's idempotency key) is nothing.
    SendNotification {
        message: MessageId,
        template: String,
        kind: NotificationKind,
        body: MessageBody,
        whatsapp_template: Option<Box<WhatsAppTemplateCall>>,
        message_tag: Option<String>,
        notice: Option<Box<(MessageId, MessageBody)>>,
    },
    ReceiveRating {
        score: u8,
        comment: Option<Personal<String>>,
    },
    CloseTicket {
        reason: CloseReason,
    },
    AbandonTicket,
    RecordDelivery {
        message: MessageId,
        provider_message_id: Personal<String>,
    },
    RecordDeliveryFailure {
        message: MessageId,
        reason: Personal<String>,
        permanent: bool,
    },
    RecordRead {
        message: MessageId,
        provider_message_id: Personal<String>,
    },
    EraseCustomer,
    /// The attachment of the customer's message `message` was fetched and stored.
    RecordAttachmentStored {
        message: MessageId,
        object: String,
        size_bytes: u64,
        mime_type: String,
    },
    /// The attachment of the customer's message `message` could not be fetched.
    RecordAttachmentNotFetched {
        message: MessageId,
        reason: String,
    },
}

impl Command {
    /// A verb for error messages: "ticket … is Closed; cannot assign an agent".
    pub fn action(&self) -> &'static str {
        match self {
            Command::OpenTicket { .. } => "open",
            Command::ReceiveCustomerMessage { .. } => "receive a customer message",
            Command::SendBotMessage { .. } => "send a bot message",
            Command::CaptureDetails(_) => "capture details",
            Command::DetectLanguage { .. } => "set the language",
            Command::NoteEntryPoint { .. } => "note the entry point",
            Command::RecordConversationClosed => "record the conversation closed by the customer",
            Command::RequestHandoff { .. } => "request a handoff",
            Command::RouteToQueue { .. } => "route to a queue",
            Command::ReferToStore { .. } => "refer to a store",
            Command::AssignAgent { .. } => "assign an agent",
            Command::AcceptAssignment { .. } => "accept the assignment",
            Command::SendAgentMessage { .. } => "send an agent message",
            Command::RecordCannedReply { .. } => "record a canned reply",
            Command::RecordSlaAlarm { .. } => "record an SLA alarm",
            Command::ReleaseTicket { .. } => "release",
            Command::ResolveTicket { .. } => "resolve",
            Command::RequestRating { .. } => "request a rating",
            Command::HandBackToBot { .. } => "hand the conversation back to the bot",
            Command::AddAgentNote { .. } => "add a note",
            Command::TransferTicket { .. } => "transfer",
            Command::SendNotification { .. } => "send a notification",
            Command::ReceiveRating { .. } => "receive a rating",
            Command::CloseTicket { .. } => "close",
            Command::AbandonTicket => "abandon",
            Command::RecordDelivery { .. } => "record a delivery",
            Command::RecordDeliveryFailure { .. } => "record a delivery failure",
            Command::RecordRead { .. } => "record a read",
            Command::EraseCustomer => "erase the customer",
            Command::RecordAttachmentStored { .. } => "record a stored attachment",
            Command::RecordAttachmentNotFetched { .. } => "record an attachment not fetched",
        }
    }
}
