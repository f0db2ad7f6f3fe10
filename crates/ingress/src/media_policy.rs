//! Where an attachment may be fetched from. A customer's message names its attachment
//! by URL on Messenger, Viber and the web chat, and WhatsApp's media lookup answers with
//! one: left unchecked, a signed message could make helpline fetch (and keep) its own
//! `/metrics`, a cloud metadata endpoint or anything else inside the network.
//!
//! Each channel has an allow-list, `ingress.media_hosts.<channel>`, of two kinds of entry:
//!
//! - `cdn.example.com` — that host and its subdomains, over `https` only, and only at a
//!   public address: the name is resolved by [`PublicResolver`], which refuses loopback,
//!   private, link-local, shared and reserved ranges, so a DNS answer pointing inside is
//!   refused after resolution, not before.
//! - `http://media.internal:8090` — exactly that origin (scheme, host, port) at whatever
//!   address it has: an operator naming an internal media server, or a test rig.
//!
//! A URL no entry admits is refused; so is a redirect to one (redirects are followed by
//! the fetcher itself, each hop checked like the first). A refusal names no URL: a URL
//! can hold a token or name the customer.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use helpline_channels::PerChannel;
use helpline_domain::Channel;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::{Deserialize, Serialize};

/// `[ingress.media_hosts]`: per channel (by its name in the registry), where its
/// attachments may come from. A channel not named keeps its folder's default
/// (`media_hosts()` there: the provider's CDN domains; none for the web chat, whose
/// uploads are the site's own, nor for Telegram, whose files come from its API).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct MediaHostsConfig {
    /// The channels the configuration names, with their lists; a name that is no
    /// channel's is refused as an unknown key when the file is read.
    named: PerChannel<Vec<String>>,
}

impl MediaHostsConfig {
    /// The same list for every channel (a test rig serving every provider's media).
    pub fn everywhere(entries: &[String]) -> Self {
        let mut named = PerChannel::default();
        for channel in helpline_channels::CHANNELS {
            named.set(*channel, entries.to_vec());
        }
        Self { named }
    }

    /// `channel`'s list: as configured, else its default.
    pub fn hosts(&self, channel: Channel) -> Vec<String> {
        match self.named.get(channel) {
            Some(entries) => entries.clone(),
            None => helpline_channels::media_hosts(channel)
                .iter()
                .map(|host| (*host).to_owned())
                .collect(),
        }
    }

    /// Sets `channel`'s list.
    pub fn set(&mut self, channel: Channel, entries: Vec<String>) {
        self.named.set(channel, entries);
    }

    /// Adds `entry` to `channel`'s list.
    pub fn add(&mut self, channel: Channel, entry: String) {
        let mut entries = self.hosts(channel);
        entries.push(entry);
        self.set(channel, entries);
    }

    /// Every channel's list, parsed; an unreadable entry is an error naming it.
    pub fn parse(&self) -> Result<HashMap<Channel, MediaHosts>, String> {
        helpline_channels::CHANNELS
            .iter()
            .map(|channel| {
                MediaHosts::parse(&self.hosts(*channel))
                    .map(|hosts| (*channel, hosts))
                    .map_err(|reason| format!("{}: {reason}", channel.as_str()))
            })
            .collect()
    }
}

/// What `config show` prints: every channel's list in effect.
impl Serialize for MediaHostsConfig {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let effective: BTreeMap<&str, Vec<String>> = helpline_channels::CHANNELS
            .iter()
            .map(|channel| (channel.as_str(), self.hosts(*channel)))
            .collect();
        effective.serialize(serializer)
    }
}

/// One channel's allow-list, parsed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MediaHosts {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Rule {
    /// The domain and its subdomains, https, public addresses.
    Domain(String),
    /// Exactly this origin, any address.
    Origin {
        scheme: String,
        host: String,
        port: u16,
    },
}

/// How an admitted URL is fetched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Through [`PublicResolver`]: only public addresses.
    PublicOnly,
    /// As named by the operator: any address.
    Named,
}

/// Why a URL is not fetched. Never holds the URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    Unreadable,
    NotHttps,
    NotAllowed,
    /// The host is written as an address inside the network.
    NotPublic,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::Unreadable => "the attachment's URL cannot be read",
            Refusal::NotHttps => "the attachment's URL is not https",
            Refusal::NotAllowed => "the attachment's host is not in the channel's media hosts",
            Refusal::NotPublic => "the attachment's host is not a public address",
        })
    }
}

impl MediaHosts {
    /// Parses `entries`; an entry that is neither a domain nor an origin is an error
    /// naming it (entries are configuration, not personal data).
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let rules = entries
            .iter()
            .map(|entry| parse_rule(entry.trim()).ok_or_else(|| format!("media host {entry:?} is neither a domain (cdn.example.com) nor an origin (https://host:port)")))
            .collect::<Result<_, _>>()?;
        Ok(Self { rules })
    }

    /// Whether, and how, `url` may be fetched.
    pub fn admit(&self, url: &str) -> Result<(Url, Reach), Refusal> {
        let url = Url::parse(url).map_err(|_| Refusal::Unreadable)?;
        let host = url
            .host_str()
            .ok_or(Refusal::Unreadable)?
            .trim_end_matches('.')
            .to_ascii_lowercase();
        let port = url.port_or_known_default().ok_or(Refusal::Unreadable)?;
        let named = self.rules.iter().any(|rule| match rule {
            Rule::Origin {
                scheme,
                host: allowed,
                port: allowed_port,
            } => url.scheme() == scheme && host == *allowed && port == *allowed_port,
            Rule::Domain(_) => false,
        });
        if named {
            return Ok((url, Reach::Named));
        }
        if url.scheme() != "https" {
            return Err(Refusal::NotHttps);
        }
        // An address written into the URL is never resolved, so check it here.
        if let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>()
            && !is_public(ip)
        {
            return Err(Refusal::NotPublic);
        }
        let listed = self.rules.iter().any(|rule| match rule {
            Rule::Domain(domain) => {
                host == *domain
                    || host
                        .strip_suffix(domain.as_str())
                        .is_some_and(|sub| sub.ends_with('.'))
            }
            Rule::Origin { .. } => false,
        });
        if !listed {
            return Err(Refusal::NotAllowed);
        }
        Ok((url, Reach::PublicOnly))
    }
}

fn parse_rule(entry: &str) -> Option<Rule> {
    if entry.contains("://") {
        let url = Url::parse(entry).ok()?;
        if !matches!(url.scheme(), "http" | "https") || url.path() != "/" || url.query().is_some() {
            return None;
        }
        return Some(Rule::Origin {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        });
    }
    let domain = entry.trim_end_matches('.').to_ascii_lowercase();
    let valid = !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    valid.then_some(Rule::Domain(domain))
}

/// Whether `ip` is an address on the internet at large: not loopback, private,
/// link-local, shared (CGNAT), unique-local, multicast, documentation, benchmarking or
/// reserved — nothing that could be inside helpline's own network.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // Shared address space (RFC 6598), the IETF's own, benchmarking, reserved.
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // Unique local fc00::/7, link-local fe80::/10, documentation 2001:db8::/32,
        // and NAT64's well-known prefix 64:ff9b::/96 (it reaches IPv4 space).
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b))
}

/// The DNS resolver of public-only fetches: resolves as the system does, then keeps only
/// public addresses, and fails when none is left. The connection then goes to an address
/// that was checked, so a name that resolves inside cannot be used to get there.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublicResolver;

/// The resolver's refusal, found again in the fetch error's sources.
#[derive(Debug)]
pub struct NotPublic;

impl fmt::Display for NotPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the attachment's host resolves to no public address")
    }
}

impl std::error::Error for NotPublic {}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|address| is_public(address.ip()))
                .collect();
            if resolved.is_empty() {
                return Err(Box::new(NotPublic) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(resolved.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_has_its_folders_hosts_unless_configured_and_no_other_name_is_taken() {
        let config: MediaHostsConfig =
            serde_json::from_str(r#"{"web": ["http://console:8088"]}"#).unwrap_or_default();
        assert_eq!(config.hosts(Channel::WebChat), ["http://console:8088"]);
        assert_eq!(
            config.hosts(Channel::WhatsApp),
            ["fbsbx.com", "whatsapp.net"]
        );
        assert_eq!(
            config.hosts(Channel::AppleMessages),
            ["icloud-content.com", "icloud.com"]
        );
        assert!(config.hosts(Channel::Telegram).is_empty());
        let shown = serde_json::to_value(&config).unwrap_or_default();
        assert_eq!(shown["viber"], serde_json::json!(["viber.com"]));
        assert_eq!(shown["web"], serde_json::json!(["http://console:8088"]));
        let refused = serde_json::from_str::<MediaHostsConfig>(r#"{"fax": ["x.example"]}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("unknown field `fax`"), "{refused}");
        assert!(refused.contains("`apple`"), "{refused}");
    }

    fn hosts(entries: &[&str]) -> MediaHosts {
        let entries: Vec<String> = entries.iter().map(|e| (*e).to_owned()).collect();
        MediaHosts::parse(&entries).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_listed_domain_admits_itself_and_its_subdomains_over_https_only() {
        let cdn = hosts(&["fbcdn.net"]);
        for url in [
            "https://fbcdn.net/x.jpg",
            "https://scontent.xx.fbcdn.net/v/t1.jpg?oh=1",
            "https://SCONTENT.FBCDN.NET./x",
        ] {
            assert_eq!(
                cdn.admit(url).map(|(_, r)| r),
                Ok(Reach::PublicOnly),
                "{url}"
            );
        }
        assert_eq!(
            cdn.admit("http://scontent.fbcdn.net/x").map(|(_, r)| r),
            Err(Refusal::NotHttps)
        );
        for url in [
            "https://evilfbcdn.net/x",
            "https://fbcdn.net.evil.com/x",
            "https://example.com/x",
        ] {
            assert_eq!(
                cdn.admit(url).map(|(_, r)| r),
                Err(Refusal::NotAllowed),
                "{url}"
            );
        }
    }

    #[test]
    fn addresses_inside_the_network_are_refused_however_they_are_written() {
        let any = hosts(&["fbcdn.net"]);
        for url in [
            "https://127.0.0.1/metrics",
            "https://10.1.2.3/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://[fd00::1]/x",
            "https://100.64.0.1/x",
        ] {
            assert_eq!(
                any.admit(url).map(|(_, r)| r),
                Err(Refusal::NotPublic),
                "{url}"
            );
        }
    }

    #[test]
    fn an_origin_admits_exactly_itself_at_any_address() {
        let rig = hosts(&["http://127.0.0.1:8090"]);
        assert_eq!(
            rig.admit("http://127.0.0.1:8090/media/1").map(|(_, r)| r),
            Ok(Reach::Named)
        );
        for url in [
            "http://127.0.0.1:8091/media/1",
            "https://127.0.0.1:8090/media/1",
            "http://localhost:8090/media/1",
        ] {
            assert!(rig.admit(url).is_err(), "{url}");
        }
    }

    #[test]
    fn unreadable_entries_are_configuration_errors() {
        for entry in [
            "",
            "ftp://x.example",
            "https://x.example/path",
            "a..b",
            "*.cdn.com",
        ] {
            assert!(MediaHosts::parse(&[entry.to_owned()]).is_err(), "{entry:?}");
        }
    }

    #[test]
    fn public_addresses_are_public() {
        for ip in [
            "8.8.8.8",
            "157.240.1.35",
            "2a03:2880:f12f:83:face:b00c::25de",
        ] {
            assert!(
                is_public(ip.parse().unwrap_or_else(|e| panic!("{e}"))),
                "{ip}"
            );
        }
        for ip in [
            "0.0.0.0",
            "192.168.1.1",
            "172.16.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "fe80::1",
        ] {
            assert!(
                !is_public(ip.parse().unwrap_or_else(|e| panic!("{e}"))),
                "{ip}"
            );
        }
    }
}
