//! A setting per channel, keyed by the registry's names (`whatsapp = 20.0`): a name that
//! is no channel's is refused as an unknown key, naming the channels, before its value is
//! read.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use helpline_domain::Channel;
use serde::{Deserialize, Serialize};

/// Values for some channels, by their names in the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerChannel<T> {
    named: BTreeMap<String, T>,
}

impl<T> Default for PerChannel<T> {
    fn default() -> Self {
        Self {
            named: BTreeMap::new(),
        }
    }
}

impl<T> PerChannel<T> {
    /// `channel`'s value, if the configuration names it.
    pub fn get(&self, channel: Channel) -> Option<&T> {
        self.named.get(channel.as_str())
    }

    /// Sets `channel`'s value.
    pub fn set(&mut self, channel: Channel, value: T) {
        self.named.insert(channel.as_str().to_owned(), value);
    }

    /// The channels named, with their values, in the registry's order.
    pub fn iter(&self) -> impl Iterator<Item = (Channel, &T)> {
        crate::CHANNELS
            .iter()
            .filter_map(|channel| self.get(*channel).map(|value| (*channel, value)))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for PerChannel<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Named<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Named<T> {
            type Value = PerChannel<T>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value per channel, by the channel's name")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut named = BTreeMap::new();
                while let Some(name) = map.next_key::<String>()? {
                    if crate::by_name(&name).is_none() {
                        return Err(serde::de::Error::unknown_field(&name, crate::NAMES));
                    }
                    named.insert(name, map.next_value::<T>()?);
                }
                Ok(PerChannel { named })
            }
        }
        deserializer.deserialize_map(Named(PhantomData))
    }
}

impl<T: Serialize> Serialize for PerChannel<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.named.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_is_no_channels_is_an_unknown_key_naming_the_channels() {
        let read: PerChannel<f64> =
            serde_json::from_str(r#"{"whatsapp": 20.0, "telegram": 5}"#).unwrap_or_default();
        assert_eq!(read.get(Channel::WhatsApp), Some(&20.0));
        assert_eq!(read.get(Channel::Viber), None);
        let named: Vec<Channel> = read.iter().map(|(channel, _)| channel).collect();
        assert_eq!(named, [Channel::WhatsApp, Channel::Telegram]);
        let refused = serde_json::from_str::<PerChannel<f64>>(r#"{"fax": 1.0}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(refused.contains("unknown field `fax`"), "{refused}");
        assert!(refused.contains("`whatsapp`"), "{refused}");
    }
}
