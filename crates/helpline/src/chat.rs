//! Chatting as a customer from the terminal, through the channel simulator: each line
//! typed is a correctly signed webhook to helpline's ingress; what customers receive is
//! printed as it arrives. Used by `helpline dev` and `helpline simulate`.

use std::sync::Arc;
use std::time::Duration;

use helpline_domain::Channel;
use helpline_ingress::ChannelsConfig;
use helpline_testkit::simulator::{DeliveryResponse, Simulator, SimulatorError};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;

/// helpline's `[channels.*]` for talking to `sim` instead of the real providers.
pub fn simulated_channels(sim: &Simulator) -> Result<ChannelsConfig, serde_json::Error> {
    serde_json::from_value(sim.helpline_channels())
}

/// The same configuration as TOML, for a helpline started separately.
pub fn simulated_channels_toml(sim: &Simulator) -> String {
    let mut toml = String::new();
    if let serde_json::Value::Object(channels) = sim.helpline_channels() {
        for (channel, keys) in channels {
            toml.push_str(&format!("[channels.{channel}]\n"));
            if let serde_json::Value::Object(keys) = keys {
                for (key, value) in keys {
                    // A JSON string is a valid TOML basic string.
                    toml.push_str(&format!("{key} = {value}\n"));
                }
            }
            toml.push('\n');
        }
    }
    toml
}

/// How long a typed line is delivered again while helpline does not take it (restarting,
/// or answering `5xx`), as providers redeliver webhooks.
const REDELIVERY: Duration = Duration::from_secs(120);

/// How to chat, naming the registry's channels.
pub fn how_to_chat() -> String {
    format!(
        "chat as a customer: type `<channel> <customer> <text>`, e.g. \
         `whatsapp 4915112345678 Mein Laptop startet nicht` (channels: {}); replies to \
         customers are printed as they arrive",
        helpline_channels::NAMES.join(", ")
    )
}

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
                let redelivery = |outcome: &Result<_, SimulatorError>, pause: Duration| {
                    let why = match outcome {
                        Ok(DeliveryResponse { status, .. }) => {
                            format!("helpline answered {status}")
                        }
                        Err(e) => format!("helpline did not answer ({e})"),
                    };
                    println!(
                        "→ {} {customer}: {why}; delivered again in {:.1} s",
                        channel.as_str(),
                        pause.as_secs_f64()
                    );
                };
                let delivery =
                    sim.deliver_until_answered(&ingress_url, &webhook, REDELIVERY, redelivery);
                let delivery = tokio::select! {
                    _ = stop.cancelled() => break,
                    delivery = delivery => delivery,
                };
                match delivery {
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
            None => println!("{}", how_to_chat()),
        }
    }
    printer.abort();
}

fn parse_line(line: &str) -> Option<(Channel, &str, &str)> {
    let (channel, rest) = line.split_once(' ')?;
    let (customer, text) = rest.trim_start().split_once(' ')?;
    let channel = helpline_channels::by_name(channel)?;
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
