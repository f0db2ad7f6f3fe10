//! Events for people: a one-line summary per event, and the one decision about who may
//! see personal data.

use helpline_domain::{
    CloseReason, Event, HandoffReason, MediaKind, MessageBody, Personal, ReleaseReason,
    RouteDestination,
};

/// Who is reading, as far as personal data goes. Every personal value the query service
/// shows passes through [`Audience::reveal`], so a rule such as "agents see only their
/// own tickets' customers" is added here and nowhere else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Audience {
    may_see_personal: bool,
}

/// What stands in for personal data a reader may not see.
pub const HIDDEN: &str = "***";
/// What stands in for personal data of an erased customer.
pub const ERASED: &str = helpline_domain::Erased::SHOWN;

impl Audience {
    /// An operator of the region: sees personal data. Callers are not authenticated yet,
    /// so every caller is one (see `docs/ARCHITECTURE.md`).
    pub fn operator() -> Self {
        Self {
            may_see_personal: true,
        }
    }

    /// A reader who sees no personal data.
    pub fn anonymous() -> Self {
        Self {
            may_see_personal: false,
        }
    }

    /// The personal `value` as this reader may see it, on a ticket whose customer may
    /// have been erased: erased (its key gone, or the ticket's customer erased since it
    /// was read) it shows as `[erased]` to everyone.
    pub fn reveal(&self, value: &Personal<String>, erased: bool) -> String {
        if erased || value.is_erased() {
            ERASED.to_owned()
        } else if self.may_see_personal {
            value.expose().clone()
        } else {
            HIDDEN.to_owned()
        }
    }
}

/// One line on what `event` says, for a timeline.
pub fn describe(event: &Event, audience: &Audience, erased: bool) -> String {
    let reveal = |value: &Personal<String>| audience.reveal(value, erased);
    let body = |body: &MessageBody| describe_body(body, audience, erased);
    match event {
        Event::TicketOpened {
            customer, language, ..
        } => {
            let name = customer
                .display_name
                .as_ref()
                .map(|name| format!(" ({})", reveal(name)))
                .unwrap_or_default();
            format!(
                "opened on {} by {}{name}, language {language}",
                customer.channel.as_str(),
                reveal(&customer.contact)
            )
        }
        Event::CustomerMessageReceived { body: b, .. } => format!("customer: {}", body(b)),
        Event::BotMessageSent {
            body: b,
            prompt,
            choices,
            ..
        } => {
            let buttons = if choices.is_empty() {
                String::new()
            } else {
                let titles: Vec<&str> = choices.iter().map(|c| c.title.as_str()).collect();
                format!(" [{}]", titles.join(" | "))
            };
            format!("bot ({prompt}): {}{buttons}", body(b))
        }
        Event::DetailsCaptured(details) => {
            let mut parts = Vec::new();
            let mut add = |name: &str, value: String| {
                if !value.is_empty() {
                    parts.push(format!("{name} {value}"));
                }
            };
            add("product", details.product.clone());
            if present(&details.serial_number) {
                let verified = if details.serial_verified {
                    ""
                } else {
                    " (unverified)"
                };
                add(
                    "serial",
                    format!("{}{verified}", reveal(&details.serial_number)),
                );
            }
            if present(&details.problem) {
                add("problem", format!("\"{}\"", reveal(&details.problem)));
            }
            add("category", details.category.clone());
            if present(&details.location) {
                add("location", reveal(&details.location));
            }
            if parts.is_empty() {
                "details: nothing yet".to_owned()
            } else {
                format!("details: {}", parts.join(", "))
            }
        }
        Event::LanguageDetected { language } => format!("language is {language}"),
        Event::ConversationClosedByCustomer => {
            "the customer closed the conversation; nothing is sent until they write".to_owned()
        }
        Event::EntryPointNoted { intent, group } => {
            let named: Vec<String> = [("intent", intent), ("group", group)]
                .into_iter()
                .filter(|(_, value)| !value.is_empty())
                .map(|(name, value)| format!("{name} {value}"))
                .collect();
            format!("came in by {}", named.join(", "))
        }
        Event::HandoffRequested { reason, summary } => {
            let reason = match reason {
                HandoffReason::DetailsComplete => "details complete",
                HandoffReason::CustomerAsked => "customer asked for a person",
                HandoffReason::BotGaveUp => "bot gave up",
            };
            format!("handoff requested ({reason}): {}", reveal(summary))
        }
        Event::TicketRouted { rule, destination } => match destination {
            RouteDestination::Queue(queue) => format!("routed to queue {queue} by rule {rule}"),
            RouteDestination::Store(store) => format!("routed to store {store} by rule {rule}"),
        },
        Event::ReferredToStore(referral) => format!(
            "referred to store {} ({}, {}; {})",
            referral.store, referral.name, referral.address, referral.opening_hours
        ),
        Event::TicketQueued { queue } => format!("queued in {queue}"),
        Event::AgentAssigned { agent } => format!("assigned to {agent}"),
        Event::AgentAccepted { agent } => format!("accepted by {agent}"),
        Event::AgentMessageSent { agent, body: b, .. } => format!("{agent}: {}", body(b)),
        Event::NotificationSent {
            template,
            kind,
            body: b,
            ..
        } => format!("notification {template} ({}): {}", kind.as_str(), body(b)),
        Event::TicketReleased { agent, reason } => {
            let reason = match reason {
                ReleaseReason::ByAgent => "given back",
                ReleaseReason::AgentOffline => "agent offline",
                ReleaseReason::AcceptTimeout => "not accepted in time",
                ReleaseReason::Reassigned => "reassigned by a supervisor",
                ReleaseReason::Transferred => "transferred",
            };
            format!("released by {agent} ({reason})")
        }
        Event::TicketResolved { agent, summary } if summary.is_empty() => {
            format!("resolved by {agent}")
        }
        Event::TicketResolved { agent, summary } => format!("resolved by {agent}: {summary}"),
        Event::ConversationHandedBack { agent } => format!("handed back to the bot by {agent}"),
        Event::AgentNoteAdded { agent, text } => format!("note by {agent}: {}", reveal(text)),
        Event::SlaAlarm {
            clock,
            level,
            target_secs,
            ..
        } => format!(
            "SLA {} {}: target {} min",
            clock.as_str(),
            level.as_str(),
            target_secs / 60
        ),
        Event::CannedReplyUsed { message, shortcut } => {
            format!("message {message} written from the canned reply {shortcut}")
        }
        Event::RatingRequested { .. } => "rating requested".to_owned(),
        Event::RatingReceived { score, comment } => match comment {
            Some(comment) => format!("rated {score}/5: \"{}\"", reveal(comment)),
            None => format!("rated {score}/5"),
        },
        Event::TicketClosed { reason } => {
            let reason = match reason {
                CloseReason::Rated => "rated",
                CloseReason::RatingTimeout => "no rating in time",
                CloseReason::NoRatingAsked => "no rating asked",
                CloseReason::NoRatingGiven => "no rating given",
            };
            format!("closed ({reason})")
        }
        Event::TicketAbandoned => "abandoned: the customer went silent".to_owned(),
        Event::MessageDelivered {
            message,
            provider_message_id,
        } => format!(
            "message {message} delivered (provider id {})",
            reveal(provider_message_id)
        ),
        Event::MessageDeliveryFailed {
            message,
            reason,
            permanent,
        } => {
            let kind = if *permanent { "for good" } else { "for now" };
            format!("message {message} not delivered {kind}: {}", reveal(reason))
        }
        Event::MessageRead { message, .. } => format!("message {message} read"),
        Event::CustomerErased => "customer's personal data erased".to_owned(),
        Event::AttachmentStored {
            message,
            size_bytes,
            mime_type,
            ..
        } => format!("attachment of message {message} stored ({mime_type}, {size_bytes} bytes)"),
        Event::AttachmentNotFetched { message, reason } => {
            format!("attachment of message {message} could not be fetched: {reason}")
        }
    }
}

fn describe_body(body: &MessageBody, audience: &Audience, erased: bool) -> String {
    match body {
        MessageBody::Text(text) => audience.reveal(text, erased),
        MessageBody::Media(media) => {
            let kind = match media.kind {
                MediaKind::Image => "image",
                MediaKind::Document => "document",
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
            };
            let caption = media
                .caption
                .as_ref()
                .map(|caption| format!(" \"{}\"", audience.reveal(caption, erased)))
                .unwrap_or_default();
            // A customer's attachment is fetched after its message: its size follows in
            // the attachment's own line.
            if media.awaits_fetch() {
                let mime = match media.mime_type.as_str() {
                    "" => String::new(),
                    mime => format!(" {mime}"),
                };
                return format!("[{kind}{mime}]{caption}");
            }
            format!(
                "[{kind} {}, {} bytes]{caption}",
                media.mime_type, media.size_bytes
            )
        }
        MessageBody::Location(at) => {
            let (lat, lon) = at.expose();
            let shown = match at.is_erased() {
                true => Personal::erased(),
                false => Personal::new(format!("{lat:.5}, {lon:.5}")),
            };
            format!("[location {}]", audience.reveal(&shown, erased))
        }
    }
}

/// A personal field worth showing: known and not empty, or erased.
pub(crate) fn present(value: &Personal<String>) -> bool {
    value.is_erased() || !value.expose().is_empty()
}

/// The searchable texts of `event`, lower case; personal ones only when `personal`.
pub(crate) fn texts(event: &Event, personal: bool, out: &mut Vec<String>) {
    // Pushed as found, with no list of them first: a rebuild runs this once per event.
    let public = |out: &mut Vec<String>, text: &str| {
        if !text.is_empty() {
            out.push(text.to_lowercase());
        }
    };
    let private = |out: &mut Vec<String>, value: &Personal<String>| {
        if personal {
            public(out, value.expose());
        }
    };
    match event {
        Event::TicketOpened { customer, .. } => {
            private(out, &customer.contact);
            if let Some(name) = &customer.display_name {
                private(out, name);
            }
        }
        Event::CustomerMessageReceived { body: b, .. }
        | Event::BotMessageSent { body: b, .. }
        | Event::AgentMessageSent { body: b, .. }
        | Event::NotificationSent { body: b, .. } => {
            if let Some(text) = body_text(b) {
                private(out, text);
            }
        }
        Event::DetailsCaptured(details) => {
            public(out, &details.product);
            public(out, &details.category);
            private(out, &details.serial_number);
            private(out, &details.problem);
            private(out, &details.location);
        }
        Event::HandoffRequested { summary, .. } => private(out, summary),
        Event::AgentNoteAdded { text, .. } => private(out, text),
        Event::ReferredToStore(referral) => public(out, &referral.name),
        Event::TicketResolved { summary, .. } => public(out, summary),
        Event::RatingReceived {
            comment: Some(comment),
            ..
        } => private(out, comment),
        _ => {}
    }
}

/// The text a message body carries, if any.
fn body_text(body: &MessageBody) -> Option<&Personal<String>> {
    match body {
        MessageBody::Text(text) => Some(text),
        MessageBody::Media(media) => media.caption.as_ref(),
        MessageBody::Location(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use helpline_domain::{Channel, Customer, Details, TicketId};
    use uuid::Uuid;

    use super::*;

    fn opened() -> Event {
        Event::TicketOpened {
            ticket: TicketId(Uuid::nil()),
            customer: Customer {
                channel: Channel::WhatsApp,
                contact: Personal::from("4915112345678"),
                display_name: Some(Personal::from("Erika")),
            },
            language: "de".to_owned(),
        }
    }

    #[test]
    fn an_operator_sees_personal_data_others_and_erasure_hide_it() {
        let event = opened();
        assert_eq!(
            describe(&event, &Audience::operator(), false),
            "opened on whatsapp by 4915112345678 (Erika), language de"
        );
        assert_eq!(
            describe(&event, &Audience::anonymous(), false),
            "opened on whatsapp by *** (***), language de"
        );
        assert_eq!(
            describe(&event, &Audience::operator(), true),
            "opened on whatsapp by [erased] ([erased]), language de"
        );
    }

    #[test]
    fn details_name_what_is_known() {
        let event = Event::DetailsCaptured(Details {
            product: "MateBook X Pro".to_owned(),
            serial_number: Personal::from("2NS7N19B12345678"),
            problem: Personal::from("Bildschirm flackert"),
            category: "display".to_owned(),
            ..Details::default()
        });
        assert_eq!(
            describe(&event, &Audience::operator(), false),
            "details: product MateBook X Pro, serial 2NS7N19B12345678 (unverified), \
             problem \"Bildschirm flackert\", category display"
        );
    }

    #[test]
    fn an_attachment_shows_with_its_message_then_with_its_outcome() {
        use helpline_domain::{Media, MessageId};
        let message = MessageId(Uuid::from_u128(7));
        let received = Event::CustomerMessageReceived {
            message,
            provider_message_id: "wamid.7".into(),
            body: MessageBody::Media(Media {
                kind: MediaKind::Image,
                object: Personal::default(),
                mime_type: "image/jpeg".to_owned(),
                size_bytes: 0,
                caption: Some(Personal::from("Typenschild")),
                provider_media: Personal::from("https://cdn.example.com/label.jpg"),
            }),
        };
        let operator = Audience::operator();
        assert_eq!(
            describe(&received, &operator, false),
            "customer: [image image/jpeg] \"Typenschild\""
        );
        let stored = Event::AttachmentStored {
            message,
            object: message.0.to_string(),
            size_bytes: 4096,
            mime_type: "image/jpeg".to_owned(),
        };
        assert_eq!(
            describe(&stored, &operator, false),
            format!("attachment of message {message} stored (image/jpeg, 4096 bytes)")
        );
        let not_fetched = Event::AttachmentNotFetched {
            message,
            reason: "provider answered 404 Not Found".to_owned(),
        };
        assert_eq!(
            describe(&not_fetched, &Audience::anonymous(), true),
            format!(
                "attachment of message {message} could not be fetched: provider answered 404 \
                 Not Found"
            )
        );
    }

    #[test]
    fn personal_texts_are_searchable_only_when_asked_for() {
        let mut all = Vec::new();
        texts(&opened(), true, &mut all);
        assert_eq!(all, ["4915112345678", "erika"]);
        let mut public = Vec::new();
        texts(&opened(), false, &mut public);
        assert!(public.is_empty());
    }
}
