//! Egress settings: which channels send, the WhatsApp templates, limits and retries.

use std::collections::HashMap;
use std::time::Duration;

use helpline_domain::Channel;

use helpline_channels::ChannelsConfig;
pub use helpline_channels::whatsapp::WhatsAppTemplate;

use crate::error::EgressError;

/// Everything egress needs besides the store. Defaults suit `helpline dev`; a channel
/// without a config does not send (its messages fail permanently, with that reason).
#[derive(Clone, Debug)]
pub struct EgressConfig {
    /// The same `[channels.*]` sections the webhooks read: the outbound keys
    /// (`access_token`, `bot_token`, `callback_url`, …) live beside the inbound ones.
    pub channels: ChannelsConfig,
    /// `[egress] whatsapp_template`: sent on WhatsApp in place of free text outside the
    /// 24-hour window; without it such messages fail permanently.
    pub whatsapp_template: Option<WhatsAppTemplate>,
    /// `[egress] whatsapp_rating_template` (`name`, `language`, as `whatsapp_template`):
    /// sent in place of the bot's rating request (prompts `rating` and `rating_reprompt`)
    /// outside the 24-hour window, so the customer can still rate, typically with the
    /// template's own quick-reply buttons. Without it those messages fall back to
    /// `whatsapp_template`.
    pub whatsapp_rating_template: Option<WhatsAppTemplate>,
    /// Viber's `sender.name`, at most 28 characters.
    pub viber_sender_name: String,
    pub retry: RetryPolicy,
    /// Per-channel send rates; a channel not named here gets [`RateLimit::default_for`].
    pub rate_limits: HashMap<Channel, RateLimit>,
    /// Per-channel pace of notifications (the brand writing first), on top of the
    /// channel's rate: a campaign of thousands goes out at this pace and leaves the rest
    /// of the channel's rate to conversations. A channel not named here gets
    /// [`RateLimit::default_for_notifications`]. Per process: with several egress
    /// processes the region sends at their sum.
    pub notification_rate_limits: HashMap<Channel, RateLimit>,
    /// The longest one provider request may take, connection included.
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    /// Seeds the backoff jitter, for reproducible tests; `None` seeds from entropy.
    pub jitter_seed: Option<u64>,
}

impl Default for EgressConfig {
    fn default() -> Self {
        Self {
            channels: ChannelsConfig::default(),
            whatsapp_template: None,
            whatsapp_rating_template: None,
            viber_sender_name: "Helpline".to_owned(),
            retry: RetryPolicy::default(),
            rate_limits: HashMap::new(),
            notification_rate_limits: HashMap::new(),
            request_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            jitter_seed: None,
        }
    }
}

impl EgressConfig {
    pub fn rate_limit(&self, channel: Channel) -> RateLimit {
        self.rate_limits
            .get(&channel)
            .copied()
            .unwrap_or_else(|| RateLimit::default_for(channel))
    }

    pub fn notification_rate_limit(&self, channel: Channel) -> RateLimit {
        self.notification_rate_limits
            .get(&channel)
            .copied()
            .unwrap_or_else(|| RateLimit::default_for_notifications(channel))
    }

    /// Checks what the adapters do not: the retry budget and the rates.
    pub(crate) fn validate(&self) -> Result<(), EgressError> {
        let retry = &self.retry;
        if retry.max_attempts == 0 {
            return Err(EgressError::Config(
                "retry.max_attempts must be at least 1".to_owned(),
            ));
        }
        if retry.base_delay.is_zero() || retry.max_delay < retry.base_delay {
            return Err(EgressError::Config(
                "retry.base_delay must be positive and at most retry.max_delay".to_owned(),
            ));
        }
        for channel in Channel::ALL {
            for (what, limit) in [
                ("rate limit", self.rate_limit(channel)),
                ("notification rate", self.notification_rate_limit(channel)),
            ] {
                if !(limit.per_second.is_finite() && limit.per_second > 0.0) || limit.burst == 0 {
                    return Err(EgressError::Config(format!(
                        "{what} of {}: per_second must be positive and burst at least 1",
                        channel.as_str()
                    )));
                }
            }
        }
        if self.request_timeout.is_zero() {
            return Err(EgressError::Config(
                "request_timeout must be positive".to_owned(),
            ));
        }
        Ok(())
    }
}

/// A token bucket: `per_second` sends on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// Below each provider's documented ceiling: WhatsApp 80 messages/s per number,
    /// Telegram about 30/s per bot; Messenger, Viber and the web chat name none.
    pub fn default_for(channel: Channel) -> Self {
        let per_second = match channel {
            Channel::WhatsApp => 80.0,
            Channel::Telegram => 25.0,
            _ => 50.0,
        };
        Self {
            per_second,
            burst: 20,
        }
    }

    /// A quarter of the channel's default rate, without bursts: a campaign never takes
    /// more than that from the conversations' share.
    pub fn default_for_notifications(channel: Channel) -> Self {
        Self {
            per_second: Self::default_for(channel).per_second / 4.0,
            burst: 1,
        }
    }
}

/// How long one message is retried inside egress before the consumer takes over
/// (a delayed redelivery). Keep `max_elapsed` below the consumer's ack wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per delivery of the event, the first included.
    pub max_attempts: u32,
    /// First backoff; doubled per attempt, with jitter, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// No wait starts that would end later than this after the first attempt.
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(10),
            max_elapsed: Duration::from_secs(20),
        }
    }
}
