//! Chatting as a customer from the terminal, through the channel simulator: each line
//! typed is a correctly signed webhook to helpline's ingress; what customers receive is
//! printed as it arrives. Used by `helpline dev` and `helpline simulate`.

use std::sync::Arc;
use std::time::Duration;

use helpline_domain::Channel;
use helpline_ingress::ChannelsConfig;
use helpline_ingress::channels::{
    messenger::MessengerConfig, telegram::TelegramConfig, viber::ViberConfig, web::WebConfig,
    whatsapp::WhatsAppConfig,
};
use helpline_testkit::simulator::Simulator;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// helpline's `[channels.*]` for talking to `sim` instead of the real providers.
pub fn simulated_channels(sim: &Simulator) -> ChannelsConfig {
    let c = sim.config();
    ChannelsConfig {
        whatsapp: Some(WhatsAppConfig {
            app_secret: c.whatsapp.app_secret.as_str().into(),
            verify_token: c.whatsapp.verify_token.as_str().into(),
            access_token: c.whatsapp.access_token.as_str().into(),
            phone_number_id: c.whatsapp.phone_number_id.clone(),
            api_base_url: sim.api_base_url(Channel::WhatsApp),
        }),
        messenger: Some(MessengerConfig {
            app_secret: c.messenger.app_secret.as_str().into(),
            verify_token: c.messenger.verify_token.as_str().into(),
            page_access_token: c.messenger.page_access_token.as_str().into(),
            api_base_url: sim.api_base_url(Channel::Messenger),
        }),
        telegram: Some(TelegramConfig {
            secret_token: c.telegram.secret_token.as_str().into(),
            bot_token: c.telegram.bot_token.as_str().into(),
            api_base_url: sim.api_base_url(Channel::Telegram),
        }),
        viber: Some(ViberConfig {
            auth_token: c.viber.auth_token.as_str().into(),
            api_base_url: sim.api_base_url(Channel::Viber),
        }),
        web: Some(WebConfig {
            shared_secret: c.web.shared_secret.as_str().into(),
            callback_url: sim.api_base_url(Channel::WebChat),
        }),
    }
}

/// The same configuration as TOML, for a helpline started separately.
pub fn simulated_channels_toml(sim: &Simulator) -> String {
    let c = sim.config();
    format!(
        r#"[channels.whatsapp]
app_secret = "{}"
verify_token = "{}"
access_token = "{}"
phone_number_id = "{}"
api_base_url = "{}"

[channels.messenger]
app_secret = "{}"
verify_token = "{}"
page_access_token = "{}"
api_base_url = "{}"

[channels.telegram]
secret_token = "{}"
bot_token = "{}"
api_base_url = "{}"

[channels.viber]
auth_token = "{}"
api_base_url = "{}"

[channels.web]
shared_secret = "{}"
callback_url = "{}"
"#,
        c.whatsapp.app_secret,
        c.whatsapp.verify_token,
        c.whatsapp.access_token,
        c.whatsapp.phone_number_id,
        sim.api_base_url(Channel::WhatsApp),
        c.messenger.app_secret,
        c.messenger.verify_token,
        c.messenger.page_access_token,
        sim.api_base_url(Channel::Messenger),
        c.telegram.secret_token,
        c.telegram.bot_token,
        sim.api_base_url(Channel::Telegram),
        c.viber.auth_token,
        sim.api_base_url(Channel::Viber),
        c.web.shared_secret,
        sim.api_base_url(Channel::WebChat),
    )
}

pub const HOW_TO_CHAT: &str = "chat as a customer: type `<channel> <customer> <text>`, e.g. \
`whatsapp 4915112345678 Mein Laptop startet nicht` (channels: whatsapp, messenger, telegram, \
viber, web); replies to customers are printed as they arrive";

/// Reads chat lines from stdin and prints what customers receive, until `stop`.
pub async fn run(sim: Arc<Simulator>, ingress_url: String, stop: CancellationToken) {
    let printer = tokio::spawn(print_received(sim.clone(), stop.clone()));
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    loop {
        let line = tokio::select! {
            _ = stop.cancelled() => break,
            line = lines.next_line() => line,
        };
        let Ok(Some(line)) = line else {
            // stdin closed (not a terminal): keep printing replies until stopped.
            stop.cancelled().await;
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_line(line) {
            Some((channel, customer, text)) => {
                let webhook = sim.webhook(channel, customer, text);
                match sim.deliver(&ingress_url, &webhook).await {
                    Ok(answer) if answer.status == 200 => {
                        println!("→ {} {customer}: delivered", channel.as_str())
                    }
                    Ok(answer) => println!(
                        "→ {} {customer}: helpline answered {} {}",
                        channel.as_str(),
                        answer.status,
                        answer.body.trim()
                    ),
                    Err(e) => println!("→ {} {customer}: not delivered: {e}", channel.as_str()),
                }
            }
            None => println!("{HOW_TO_CHAT}"),
        }
    }
    printer.abort();
}

fn parse_line(line: &str) -> Option<(Channel, &str, &str)> {
    let (channel, rest) = line.split_once(' ')?;
    let (customer, text) = rest.trim_start().split_once(' ')?;
    let channel = Channel::ALL
        .into_iter()
        .find(|c| c.as_str() == channel && *c != Channel::AppleMessages)?;
    Some((channel, customer, text))
}

async fn print_received(sim: Arc<Simulator>, stop: CancellationToken) {
    let mut shown = 0;
    loop {
        let received = sim.all_received();
        for message in received.iter().skip(shown) {
            let text = message
                .text
                .clone()
                .or_else(|| message.template.as_ref().map(|t| format!("[template {t}]")))
                .unwrap_or_default();
            println!(
                "← {} {}: {text}",
                message.channel.as_str(),
                message.customer
            );
        }
        shown = received.len();
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chat_line_names_channel_customer_and_text() {
        assert_eq!(
            parse_line("whatsapp 4915112345678 Mein Laptop  startet nicht"),
            Some((
                Channel::WhatsApp,
                "4915112345678",
                "Mein Laptop  startet nicht"
            ))
        );
        assert_eq!(
            parse_line("web sess_1 hallo"),
            Some((Channel::WebChat, "sess_1", "hallo"))
        );
        assert_eq!(parse_line("fax 123 hallo"), None);
        assert_eq!(parse_line("telegram 123"), None);
    }
}
