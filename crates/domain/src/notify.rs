//! Notifications: the brand writes first ("your repaired MateBook is ready for pickup").
//!
//! Two pure parts, in the style of the ticket's `decide`/`evolve`:
//!
//! - **Consent** is the customer's, not a ticket's: it outlives their tickets. It lives in
//!   the customer's own ledger as [`ConsentChanged`] events, each carrying the whole state
//!   after it, so the latest one is the state. [`Consent::apply`] says what a signal (the
//!   customer's "STOP", Viber's `unsubscribed`, the brand's recorded opt-in) changes.
//! - **Reach** says, from what the log knows of the customer ([`Reach`]), the kind of
//!   notification and what the region configured for its template ([`Means`]), which
//!   lawful way the channel allows right now ([`Way`]), or why none ([`Refusal`]). Each
//!   provider's rule is in one arm of [`reach`]; the sources are in
//!   `APPLE-AND-NOTIFY.md` §2 of the design notes.
//!
//! No clock: `now` and the customer's last message time arrive as values.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::event::Channel;

/// How long after the customer's last message WhatsApp and Messenger take free text
/// (their "customer service window"), and Viber counts a message as inside the session.
pub const SERVICE_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

/// The template name of the notice Apple requires before the first notification of a
/// conversation ("We will send important notifications related to your account status or
/// transactions. Send 'Unsubscribe' to manage your message preferences.").
pub const APPLE_NOTICE: &str = "apple_notice";

/// What a notification is about, which decides the rules it falls under.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NotificationKind {
    /// About the customer's own case or account: a repair ready, an appointment moved.
    /// WhatsApp "utility", Messenger's update tags, Apple's "account status or transaction".
    #[default]
    Transactional,
    /// Offers and news. Only to a customer who opted in to marketing.
    Marketing,
}

impl NotificationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Transactional => "transactional",
            NotificationKind::Marketing => "marketing",
        }
    }
}

/// A customer's answer to one kind of message: nothing said yet, yes, or no.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Answer {
    #[default]
    Unknown,
    Given,
    Withdrawn,
}

/// Which notifications a signal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Scope {
    /// Every notification (the customer's "STOP", a block, an unsubscribe).
    All,
    /// Marketing only (WhatsApp's "stop marketing messages", Messenger's marketing opt-out).
    Marketing,
}

/// Who said it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConsentSource {
    /// The customer wrote a stop or start word ("STOP", "Abmelden", "START").
    CustomerWords,
    /// The provider reported it: Viber's `unsubscribed`, Telegram's block, Messenger's
    /// or WhatsApp's notification preferences.
    Provider,
    /// The brand's systems recorded it (an opt-in on the repair form), through the
    /// Notifications API.
    Brand,
}

impl ConsentSource {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentSource::CustomerWords => "customer_words",
            ConsentSource::Provider => "provider",
            ConsentSource::Brand => "brand",
        }
    }
}

/// A customer's consent to notifications, as their ledger's latest event says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Consent {
    /// Transactional notifications (and, withdrawn, everything).
    pub notifications: Answer,
    /// Marketing on top of them.
    pub marketing: Answer,
}

/// The one event of the customer's ledger: their consent changed, to `consent`, because
/// of `source` saying `granted` (or not) for `scope`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentChanged {
    pub consent: Consent,
    pub scope: Scope,
    pub granted: bool,
    pub source: ConsentSource,
}

impl Consent {
    /// What a signal changes: `None` when the consent already says so (a second "STOP"
    /// writes nothing). Withdrawing everything withdraws marketing too; granting marketing
    /// grants notifications too (an offer is a notification).
    pub fn apply(
        self,
        scope: Scope,
        granted: bool,
        source: ConsentSource,
    ) -> Option<ConsentChanged> {
        let answer = if granted {
            Answer::Given
        } else {
            Answer::Withdrawn
        };
        let mut next = self;
        match (scope, granted) {
            (Scope::All, false) => {
                next.notifications = Answer::Withdrawn;
                next.marketing = Answer::Withdrawn;
            }
            (Scope::All, true) => next.notifications = answer,
            (Scope::Marketing, false) => next.marketing = answer,
            (Scope::Marketing, true) => {
                next.marketing = answer;
                next.notifications = Answer::Given;
            }
        }
        (next != self).then_some(ConsentChanged {
            consent: next,
            scope,
            granted,
            source,
        })
    }

    /// Nothing at all may be sent: the customer said stop, or blocked.
    pub fn stopped(self) -> bool {
        self.notifications == Answer::Withdrawn
    }

    /// Why this consent allows no notification of `kind`, if it does not: the one rule
    /// that [`reach`] decides by, and egress checks again at a notification's turn.
    pub fn refuses(self, kind: NotificationKind) -> Option<Refusal> {
        if self.stopped() {
            Some(Refusal::OptedOut)
        } else if kind == NotificationKind::Marketing && self.marketing != Answer::Given {
            Some(Refusal::NoMarketingConsent)
        } else {
            None
        }
    }
}

/// What the log knows of a customer on their channel, for [`reach`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reach {
    pub channel: Channel,
    pub consent: Consent,
    /// The customer wrote at least once: on Telegram they started the bot, on Viber they
    /// are subscribed (messaging a bot subscribes), on the others a conversation exists.
    pub has_written: bool,
    /// When they last wrote, for the 24-hour windows.
    pub last_message_at: Option<SystemTime>,
    /// They closed the conversation on their side (Apple's `close`) and have not written
    /// since.
    pub conversation_closed: bool,
    /// Apple's notice ("We will send important notifications…") went out in this
    /// conversation.
    pub disclosed: bool,
    pub erased: bool,
}

/// What the region configured for the template being sent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Means {
    /// An approved WhatsApp template stands in outside the window.
    pub whatsapp_template: bool,
    /// The Messenger message tag outside the window (`POST_PURCHASE_UPDATE`, …).
    pub messenger_tag: Option<String>,
}

/// The lawful way a notification goes out.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Way {
    /// Free text: inside the customer's window, or on a channel without one.
    FreeText,
    /// WhatsApp outside the 24-hour window: the approved template.
    WhatsAppTemplate,
    /// Messenger outside the 24-hour window: free text with a message tag.
    MessengerTag(String),
    /// Apple: the first notification of a conversation goes out after the notice Apple
    /// requires, in the same conversation.
    AfterAppleNotice,
}

impl Way {
    pub fn as_str(&self) -> &'static str {
        match self {
            Way::FreeText => "free_text",
            Way::WhatsAppTemplate => "whatsapp_template",
            Way::MessengerTag(_) => "messenger_tag",
            Way::AfterAppleNotice => "after_apple_notice",
        }
    }
}

/// Why a notification cannot be sent lawfully. Never silent: the caller gets it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Refusal {
    /// The customer said stop (or blocked the bot, or unsubscribed).
    OptedOut,
    /// Marketing to a customer who did not opt in to it.
    NoMarketingConsent,
    /// The customer never wrote: a Telegram bot may not start a chat, Viber needs a
    /// subscription, Messenger and Apple need a conversation.
    NeverWrote,
    /// WhatsApp outside the 24-hour window needs the customer's opt-in on record.
    NoOptIn,
    /// WhatsApp outside the window and the template has no approved WhatsApp template.
    NoWhatsAppTemplate,
    /// Messenger outside the window and the template has no message tag (or it is
    /// marketing, which no tag allows).
    NoMessengerTag,
    /// The customer closed the conversation (Apple): nothing until they write again.
    ConversationClosed,
    /// Apple allows only account and transaction notices unless the customer subscribed.
    AppleMarketing,
    /// Web chat reaches a customer only while their widget is open.
    WidgetNotOpen,
    /// The customer's personal data was erased.
    Erased,
}

impl Refusal {
    /// A stable code for APIs, metrics and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::OptedOut => "opted_out",
            Refusal::NoMarketingConsent => "no_marketing_consent",
            Refusal::NeverWrote => "never_wrote",
            Refusal::NoOptIn => "no_opt_in",
            Refusal::NoWhatsAppTemplate => "no_whatsapp_template",
            Refusal::NoMessengerTag => "no_messenger_tag",
            Refusal::ConversationClosed => "conversation_closed",
            Refusal::AppleMarketing => "apple_marketing",
            Refusal::WidgetNotOpen => "widget_not_open",
            Refusal::Erased => "erased",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::OptedOut => "the customer opted out of notifications",
            Refusal::NoMarketingConsent => "the customer has not opted in to marketing",
            Refusal::NeverWrote => {
                "the customer never wrote on this channel: it allows no first message from the business"
            }
            Refusal::NoOptIn => {
                "outside WhatsApp's 24-hour window a notification needs the customer's opt-in on record"
            }
            Refusal::NoWhatsAppTemplate => {
                "outside WhatsApp's 24-hour window only an approved template may be sent, and none is configured for this notification"
            }
            Refusal::NoMessengerTag => {
                "outside Messenger's 24-hour window only a tagged update may be sent, and this notification has no message tag (marketing has none)"
            }
            Refusal::ConversationClosed => {
                "the customer closed the conversation; nothing is sent until they write again"
            }
            Refusal::AppleMarketing => {
                "Apple Messages for Business allows account and transaction notices only"
            }
            Refusal::WidgetNotOpen => {
                "web chat reaches a customer only while their chat widget is open"
            }
            Refusal::Erased => "the customer's data was erased",
        })
    }
}

/// The lawful way to send a notification of `kind` to the customer `reach` describes, at
/// `now`, with what the region configured for it; or why there is none.
pub fn reach(
    reach: &Reach,
    kind: NotificationKind,
    means: &Means,
    now: SystemTime,
) -> Result<Way, Refusal> {
    if reach.erased {
        return Err(Refusal::Erased);
    }
    if let Some(refusal) = reach.consent.refuses(kind) {
        return Err(refusal);
    }
    let inside_window = reach.last_message_at.is_some_and(|last| {
        // A last message "in the future" (clock skew) is as recent as it gets.
        now.duration_since(last)
            .map_or(true, |age| age < SERVICE_WINDOW)
    });
    match reach.channel {
        Channel::WhatsApp => {
            if inside_window {
                Ok(Way::FreeText)
            } else if reach.consent.notifications != Answer::Given {
                Err(Refusal::NoOptIn)
            } else if means.whatsapp_template {
                Ok(Way::WhatsAppTemplate)
            } else {
                Err(Refusal::NoWhatsAppTemplate)
            }
        }
        Channel::Messenger => {
            if !reach.has_written {
                Err(Refusal::NeverWrote)
            } else if inside_window {
                Ok(Way::FreeText)
            } else {
                match (&means.messenger_tag, kind) {
                    (Some(tag), NotificationKind::Transactional) => {
                        Ok(Way::MessengerTag(tag.clone()))
                    }
                    _ => Err(Refusal::NoMessengerTag),
                }
            }
        }
        // No window: a bot may write to anyone who started it and did not block it (a
        // block is an opt-out). Viber's messages outside the 24-hour session are billed
        // as chatbot-initiated, but allowed to a subscriber.
        Channel::Telegram | Channel::Viber => {
            if reach.has_written {
                Ok(Way::FreeText)
            } else {
                Err(Refusal::NeverWrote)
            }
        }
        Channel::AppleMessages => {
            if !reach.has_written {
                Err(Refusal::NeverWrote)
            } else if reach.conversation_closed {
                Err(Refusal::ConversationClosed)
            } else if kind == NotificationKind::Marketing {
                Err(Refusal::AppleMarketing)
            } else if reach.disclosed {
                Ok(Way::FreeText)
            } else {
                Ok(Way::AfterAppleNotice)
            }
        }
        // helpline does not know whether a widget is open: the widget polls, and a
        // notification kept for a page nobody opens again would never be read.
        Channel::WebChat => Err(Refusal::WidgetNotOpen),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(hours: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + hours * 3600)
    }

    fn customer(channel: Channel) -> Reach {
        Reach {
            channel,
            consent: Consent::default(),
            has_written: true,
            last_message_at: Some(at(0)),
            conversation_closed: false,
            disclosed: false,
            erased: false,
        }
    }

    fn template_and_tag() -> Means {
        Means {
            whatsapp_template: true,
            messenger_tag: Some("POST_PURCHASE_UPDATE".to_owned()),
        }
    }

    fn opted_in(mut reach: Reach) -> Reach {
        reach.consent = Consent::default()
            .apply(Scope::All, true, ConsentSource::Brand)
            .map(|changed| changed.consent)
            .unwrap_or_default();
        reach
    }

    const TX: NotificationKind = NotificationKind::Transactional;

    #[test]
    fn whatsapp_sends_free_text_inside_the_window_and_the_template_outside() {
        let means = template_and_tag();
        let customer = opted_in(customer(Channel::WhatsApp));
        assert_eq!(reach(&customer, TX, &means, at(23)), Ok(Way::FreeText));
        assert_eq!(
            reach(&customer, TX, &means, at(25)),
            Ok(Way::WhatsAppTemplate)
        );
    }

    #[test]
    fn whatsapp_outside_the_window_needs_an_opt_in_and_a_template() {
        let never_opted_in = customer(Channel::WhatsApp);
        assert_eq!(
            reach(&never_opted_in, TX, &template_and_tag(), at(25)),
            Err(Refusal::NoOptIn)
        );
        let opted_in = opted_in(customer(Channel::WhatsApp));
        assert_eq!(
            reach(&opted_in, TX, &Means::default(), at(25)),
            Err(Refusal::NoWhatsAppTemplate)
        );
        // A number that never wrote is reached by template after an opt-in.
        let mut stranger = opted_in.clone();
        stranger.has_written = false;
        stranger.last_message_at = None;
        assert_eq!(
            reach(&stranger, TX, &template_and_tag(), at(0)),
            Ok(Way::WhatsAppTemplate)
        );
    }

    #[test]
    fn messenger_tags_a_transactional_update_outside_the_window_and_refuses_marketing() {
        let means = template_and_tag();
        let customer = customer(Channel::Messenger);
        assert_eq!(reach(&customer, TX, &means, at(1)), Ok(Way::FreeText));
        assert_eq!(
            reach(&customer, TX, &means, at(30)),
            Ok(Way::MessengerTag("POST_PURCHASE_UPDATE".to_owned()))
        );
        assert_eq!(
            reach(&customer, TX, &Means::default(), at(30)),
            Err(Refusal::NoMessengerTag)
        );
        let mut marketing = customer.clone();
        marketing.consent = Consent::default()
            .apply(Scope::Marketing, true, ConsentSource::Brand)
            .map(|changed| changed.consent)
            .unwrap_or_default();
        assert_eq!(
            reach(&marketing, NotificationKind::Marketing, &means, at(30)),
            Err(Refusal::NoMessengerTag)
        );
    }

    #[test]
    fn telegram_and_viber_reach_only_customers_who_wrote() {
        for channel in [Channel::Telegram, Channel::Viber] {
            let mut never = customer(channel);
            never.has_written = false;
            never.last_message_at = None;
            assert_eq!(
                reach(&never, TX, &Means::default(), at(0)),
                Err(Refusal::NeverWrote)
            );
            // No window: a week later is as good as now.
            assert_eq!(
                reach(&customer(channel), TX, &Means::default(), at(24 * 7)),
                Ok(Way::FreeText)
            );
        }
    }

    #[test]
    fn apple_needs_the_notice_once_and_no_close_and_no_marketing() {
        let mut apple = customer(Channel::AppleMessages);
        assert_eq!(
            reach(&apple, TX, &Means::default(), at(48)),
            Ok(Way::AfterAppleNotice)
        );
        apple.disclosed = true;
        assert_eq!(
            reach(&apple, TX, &Means::default(), at(48)),
            Ok(Way::FreeText)
        );
        apple.consent.marketing = Answer::Given;
        assert_eq!(
            reach(
                &apple,
                NotificationKind::Marketing,
                &Means::default(),
                at(48)
            ),
            Err(Refusal::AppleMarketing)
        );
        apple.conversation_closed = true;
        assert_eq!(
            reach(&apple, TX, &Means::default(), at(48)),
            Err(Refusal::ConversationClosed)
        );
    }

    #[test]
    fn web_chat_is_refused_with_its_reason() {
        assert_eq!(
            reach(&customer(Channel::WebChat), TX, &Means::default(), at(0)),
            Err(Refusal::WidgetNotOpen)
        );
    }

    #[test]
    fn an_opted_out_or_erased_customer_gets_nothing_on_any_channel() {
        for channel in Channel::ALL {
            let mut stopped = opted_in(customer(channel));
            stopped.disclosed = true;
            stopped.consent = stopped
                .consent
                .apply(Scope::All, false, ConsentSource::CustomerWords)
                .map(|changed| changed.consent)
                .unwrap_or_default();
            assert_eq!(
                reach(&stopped, TX, &template_and_tag(), at(1)),
                Err(Refusal::OptedOut),
                "{channel:?}"
            );
            let mut erased = opted_in(customer(channel));
            erased.erased = true;
            assert_eq!(
                reach(&erased, TX, &template_and_tag(), at(1)),
                Err(Refusal::Erased),
                "{channel:?}"
            );
        }
    }

    #[test]
    fn marketing_needs_its_own_consent() {
        let customer = opted_in(customer(Channel::Telegram));
        assert_eq!(
            reach(
                &customer,
                NotificationKind::Marketing,
                &Means::default(),
                at(0)
            ),
            Err(Refusal::NoMarketingConsent)
        );
    }

    #[test]
    fn consent_signals_change_only_what_they_say_and_repeat_as_nothing() {
        let start = Consent::default();
        let stop = start
            .apply(Scope::All, false, ConsentSource::CustomerWords)
            .unwrap_or_else(|| panic!("a first stop changes the consent"));
        assert!(stop.consent.stopped());
        assert_eq!(stop.consent.marketing, Answer::Withdrawn);
        assert_eq!(
            stop.consent
                .apply(Scope::All, false, ConsentSource::Provider),
            None
        );
        let resumed = stop
            .consent
            .apply(Scope::All, true, ConsentSource::CustomerWords)
            .unwrap_or_else(|| panic!("start after stop changes the consent"));
        assert!(!resumed.consent.stopped());
        // Marketing stays withdrawn until it is granted on its own.
        assert_eq!(resumed.consent.marketing, Answer::Withdrawn);
        let no_marketing = Consent::default()
            .apply(Scope::Marketing, false, ConsentSource::Provider)
            .unwrap_or_else(|| panic!("a marketing stop changes the consent"));
        assert_eq!(no_marketing.consent.notifications, Answer::Unknown);
        assert!(!no_marketing.consent.stopped());
    }
}
