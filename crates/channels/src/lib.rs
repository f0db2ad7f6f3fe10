//! The messaging channels helpline speaks, one folder each, and the one registry of them.
//!
//! A channel's folder (`whatsapp/`, `messenger/`, `telegram/`, `viber/`, `web/`, `apple/`)
//! holds all
//! of what differs between providers: its `[channels.<name>]` configuration, its
//! [`InboundAdapter`] (signature check on the raw body, the webhook's shapes read into
//! normalized [`Inbound`] values, a subscription handshake where the provider has one)
//! and, in `outbound.rs`, its [`OutboundAdapter`] (the send request built from an
//! [`OutboundMessage`], the provider's answer read into a [`SendOutcome`]). What the
//! channels share sits beside them: [`inbound`] and [`outbound`] (the normalized values
//! and the rules every provider follows), [`meta`] and [`graph`] (what WhatsApp and
//! Messenger share as Meta APIs), `choices` (buttons as each channel allows them),
//! [`json`], [`signature`], [`secret`], [`error`].
//!
//! [`registry!`] below is the only list of channels: the configuration's sections,
//! [`CHANNELS`], and the adapters of the configured channels
//! ([`ChannelsConfig::inbound_adapters`], [`ChannelsConfig::outbound_adapters`]) come from
//! it, and the webhook routes, egress's senders and the CLI's channel argument come from
//! those. Adding a channel is its folder plus one line there (docs/ARCHITECTURE.md, "How
//! to add a channel").
//!
//! **Invariants.**
//! - No I/O, no clock, no randomness: every function is a pure function of its input.
//!   The one check that needs the time, the web chat's `sent_at` window, takes it as an
//!   argument (`WebAdapter::verify_at`); the adapter's `verify` passes it what the clock
//!   it was built with says (the system clock in service, a fixed time in tests). Sending
//!   is building a request and reading an answer; the HTTP call is egress's.
//! - Bodies over [`MAX_BODY_BYTES`] are refused before anything else is done with them.
//! - Verification runs on the raw body before any parsing, and compares signatures and
//!   secrets in constant time over their full length.
//! - Never panics on input: any bytes give `Ok` or a [`WebhookError`]; no provider's
//!   answer panics a send. Invalid UTF-8 and JSON nested 128 levels or deeper are
//!   malformed, checked before serde_json runs, so deep nesting cannot overflow the stack.
//! - What a provider really sends is never an error: valid events helpline does not act
//!   on are [`Inbound::Ignored`], fields helpline only records are read in any form they
//!   come in. An error makes the provider retry the same delivery, and in the end
//!   disable the webhook.
//! - Text is kept exactly as sent, byte for byte (including `\u0000` inside JSON strings).
//! - Errors and `Ignored` reasons never carry secrets or personal data; personal values
//!   are [`Personal`](helpline_domain::Personal), whose `Debug` prints `***`.
//! - Depends on the domain alone: no service, no store.

#![forbid(unsafe_code)]

pub mod adapter;
mod choices;
pub mod error;
pub mod graph;
pub mod inbound;
pub mod json;
pub mod meta;
pub mod outbound;
pub mod per_channel;
pub mod secret;
pub mod signature;
#[cfg(test)]
mod test_support;

pub mod apple;
pub mod messenger;
pub mod telegram;
pub mod viber;
pub mod web;
pub mod whatsapp;

use helpline_domain::Channel;
use serde::Deserialize;

pub use adapter::{InboundAdapter, MAX_BODY_BYTES, WebhookRequest};
pub use error::{ConfigError, WebhookError};
pub use inbound::{
    ConversationClosed, Inbound, InboundContent, InboundMessage, ProviderConsent, Receipt,
    ReceiptStatus, Watermark,
};
pub use outbound::{
    Form, NotificationMeans, OutboundAdapter, OutboundMessage, ProviderRequest, ProviderResponse,
    Reason, SendOutcome, Unsendable,
};
pub use per_channel::PerChannel;
pub use secret::Secret;

/// What sending needs besides each channel's own section: the egress settings that name
/// one channel (`[egress] whatsapp_template`, …).
#[derive(Clone, Debug)]
pub struct OutboundSettings {
    /// Sent on WhatsApp in place of free text outside the 24-hour window.
    pub whatsapp_template: Option<whatsapp::WhatsAppTemplate>,
    /// Sent on WhatsApp in place of the bot's rating request outside the window.
    pub whatsapp_rating_template: Option<whatsapp::WhatsAppTemplate>,
    /// Viber's `sender.name`, at most 28 characters.
    pub viber_sender_name: String,
}

impl Default for OutboundSettings {
    fn default() -> Self {
        Self {
            whatsapp_template: None,
            whatsapp_rating_template: None,
            viber_sender_name: "Helpline".to_owned(),
        }
    }
}

/// The registry: one line per channel, `<config section and folder> => <domain Channel>`.
/// Each folder provides `type Config`, `MEDIA_HOSTS`, `RECEIPTS`, `fn secrets(&Config)`,
/// `fn inbound(&Config)` and `fn outbound(&Config, &OutboundSettings)`.
macro_rules! registry {
    ($($name:ident => $channel:ident),+ $(,)?) => {
        /// `[channels.*]`: a channel without a section is not served (its routes answer
        /// 404, its messages fail permanently).
        #[derive(Clone, Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct ChannelsConfig {
            $(pub $name: Option<$name::Config>,)+
        }

        /// Every channel helpline serves, in the registry's order.
        pub const CHANNELS: &[Channel] = &[$(Channel::$channel),+];

        /// Their names, as in routes and configuration sections.
        pub const NAMES: &[&str] = &[$(stringify!($name)),+];

        /// Where `channel`'s attachments come from unless `ingress.media_hosts` says
        /// otherwise: its folder's `MEDIA_HOSTS`.
        pub fn media_hosts(channel: Channel) -> &'static [&'static str] {
            match channel {
                $(Channel::$channel => $name::MEDIA_HOSTS,)+
                #[allow(unreachable_patterns)]
                _ => &[],
            }
        }

        /// Whether `channel`'s provider sends receipts on the messages it accepted (its
        /// folder's `RECEIPTS`): only then does egress keep a reverse entry to find their
        /// ticket by.
        pub fn sends_receipts(channel: Channel) -> bool {
            match channel {
                $(Channel::$channel => $name::RECEIPTS,)+
                #[allow(unreachable_patterns)]
                _ => false,
            }
        }

        impl ChannelsConfig {
            /// The inbound adapter of each configured channel, or the first refusal.
            pub fn inbound_adapters(&self) -> Result<Vec<Box<dyn InboundAdapter>>, ConfigError> {
                let mut adapters: Vec<Box<dyn InboundAdapter>> = Vec::new();
                $(if let Some(config) = &self.$name {
                    adapters.push($name::inbound(config)?);
                })+
                Ok(adapters)
            }

            /// The outbound adapter of each configured channel, or the first refusal.
            pub fn outbound_adapters(
                &self,
                settings: &OutboundSettings,
            ) -> Result<Vec<Box<dyn OutboundAdapter>>, ConfigError> {
                let mut adapters: Vec<Box<dyn OutboundAdapter>> = Vec::new();
                $(if let Some(config) = &self.$name {
                    adapters.push($name::outbound(config, settings)?);
                })+
                Ok(adapters)
            }

            /// Every secret of the configured channels, by its configuration key.
            pub fn secrets(&self) -> Vec<(&'static str, &Secret)> {
                let mut all = Vec::new();
                $(if let Some(config) = &self.$name {
                    all.extend($name::secrets(config));
                })+
                all
            }

            /// Whether `channel` has a section.
            pub fn is_configured(&self, channel: Channel) -> bool {
                match channel {
                    $(Channel::$channel => self.$name.is_some(),)+
                    #[allow(unreachable_patterns)]
                    _ => false,
                }
            }
        }
    };
}

registry! {
    whatsapp => WhatsApp,
    messenger => Messenger,
    telegram => Telegram,
    viber => Viber,
    web => WebChat,
    apple => AppleMessages,
}

/// The served channel named `name` (`whatsapp`, `web`, … as in routes and config).
pub fn by_name(name: &str) -> Option<Channel> {
    CHANNELS
        .iter()
        .copied()
        .find(|channel| channel.as_str() == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registry_names_each_channel_once_by_its_domain_name() {
        let mut names: Vec<&str> = CHANNELS.iter().map(|channel| channel.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), CHANNELS.len());
        for channel in CHANNELS {
            assert_eq!(by_name(channel.as_str()), Some(*channel));
        }
        assert_eq!(by_name("fax"), None);
    }

    #[test]
    fn the_names_are_the_channels_names() {
        let names: Vec<&str> = CHANNELS.iter().map(|channel| channel.as_str()).collect();
        assert_eq!(names, NAMES);
    }

    #[test]
    fn no_section_no_adapter() {
        let none = ChannelsConfig::default();
        assert!(none.inbound_adapters().is_ok_and(|a| a.is_empty()));
        assert!(
            none.outbound_adapters(&OutboundSettings::default())
                .is_ok_and(|a| a.is_empty())
        );
        assert!(CHANNELS.iter().all(|channel| !none.is_configured(*channel)));
    }
}
