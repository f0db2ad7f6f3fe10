//! Personal data, kept out of logs by construction, and erasable.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that is personal data (a phone number, a name, message text, a serial number).
///
/// `Debug` prints `***`, so a ticket or event can be logged whole without leaking it; the
/// value itself is reached only through [`Personal::expose`] or [`Personal::read`], which
/// makes every use visible in review. The event store seals these fields under a key per
/// customer; once that key is erased, the field reads back as [`Erased`].
///
/// As JSON (snapshots, exports) a known value is the value itself, an erased one
/// `{"erased": true}`.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(
    from = "Repr<T>",
    into = "Repr<T>",
    bound(
        serialize = "T: Serialize + Clone",
        deserialize = "T: Deserialize<'de> + Default"
    )
)]
pub struct Personal<T> {
    value: T,
    erased: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr<T> {
    Erased { erased: bool },
    Known(T),
}

impl<T: Default> From<Repr<T>> for Personal<T> {
    fn from(repr: Repr<T>) -> Self {
        match repr {
            Repr::Erased { erased: true } => Self::erased(),
            Repr::Erased { erased: false } => Self::new(T::default()),
            Repr::Known(value) => Self::new(value),
        }
    }
}

impl<T> From<Personal<T>> for Repr<T> {
    fn from(personal: Personal<T>) -> Self {
        match personal.erased {
            true => Repr::Erased { erased: true },
            false => Repr::Known(personal.value),
        }
    }
}

/// What is left of a personal value whose customer was erased: shown as `[erased]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Erased;

impl Erased {
    /// How an erased value is shown to agents, operators and exports.
    pub const SHOWN: &'static str = "[erased]";
}

impl fmt::Display for Erased {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::SHOWN)
    }
}

impl<T> Personal<T> {
    pub fn new(value: T) -> Self {
        Self {
            value,
            erased: false,
        }
    }

    /// The value, or [`Erased`] when its customer's key is gone.
    pub fn read(&self) -> Result<&T, Erased> {
        match self.erased {
            true => Err(Erased),
            false => Ok(&self.value),
        }
    }

    /// The value; an erased value exposes as empty (the type's default), so rules that
    /// look at it see "not known". Use [`Personal::read`] where erased must show.
    pub fn expose(&self) -> &T {
        &self.value
    }

    pub fn into_inner(self) -> T {
        self.value
    }

    pub fn is_erased(&self) -> bool {
        self.erased
    }
}

impl<T: Default> Personal<T> {
    /// A value whose customer was erased.
    pub fn erased() -> Self {
        Self {
            value: T::default(),
            erased: true,
        }
    }
}

impl Personal<String> {
    /// The text, or `[erased]`: for people (agents, operators, exports), never for rules.
    pub fn shown(&self) -> &str {
        match self.read() {
            Ok(value) => value,
            Err(_) => Erased::SHOWN,
        }
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.erased {
            true => f.write_str(Erased::SHOWN),
            false => f.write_str("***"),
        }
    }
}

impl From<&str> for Personal<String> {
    fn from(value: &str) -> Self {
        Self::new(value.to_owned())
    }
}

impl From<String> for Personal<String> {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

/// One personal field of an event, reached by [`crate::Event::personal_fields_mut`]: the
/// event store seals each one on append and opens (or erases) it on read.
#[derive(Debug)]
pub enum PersonalField<'a> {
    Text(&'a mut Personal<String>),
    /// A text the event may not have (a display name, a caption, a rating comment).
    OptionalText(&'a mut Option<Personal<String>>),
    /// Latitude and longitude.
    Coordinates(&'a mut Personal<(f64, f64)>),
}

impl PersonalField<'_> {
    /// Whether the field holds a personal value that can still be read: a text that is
    /// neither empty nor erased, coordinates not erased.
    pub fn holds_known_value(&self) -> bool {
        match self {
            PersonalField::Text(text) => !text.is_erased() && !text.expose().is_empty(),
            PersonalField::OptionalText(text) => text.as_ref().is_some_and(|t| !t.is_erased()),
            PersonalField::Coordinates(at) => !at.is_erased(),
        }
    }

    /// Erases the field's value; a text the event does not have stays absent, an empty
    /// one stays empty (there was nothing personal in it).
    pub fn erase(self) {
        match self {
            PersonalField::Text(text) if !text.expose().is_empty() => *text = Personal::erased(),
            PersonalField::OptionalText(Some(text)) => *text = Personal::erased(),
            PersonalField::Coordinates(at) => *at = Personal::erased(),
            PersonalField::Text(_) | PersonalField::OptionalText(None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erased_value_reads_as_erased_and_shows_so() {
        let erased: Personal<String> = Personal::erased();
        assert_eq!(erased.read(), Err(Erased));
        assert_eq!(erased.shown(), "[erased]");
        assert_eq!(erased.expose(), "");
        assert_eq!(format!("{erased:?}"), "[erased]");
    }

    #[test]
    fn json_holds_the_value_or_says_erased() {
        let known = Personal::from("Hallo");
        let json = serde_json::to_string(&known).unwrap_or_default();
        assert_eq!(json, r#""Hallo""#);
        assert_eq!(
            serde_json::from_str::<Personal<String>>(&json).ok(),
            Some(known)
        );
        let erased: Personal<String> = Personal::erased();
        let json = serde_json::to_string(&erased).unwrap_or_default();
        assert_eq!(json, r#"{"erased":true}"#);
        assert_eq!(
            serde_json::from_str::<Personal<String>>(&json).ok(),
            Some(erased)
        );
        let at = Personal::new((52.5, 13.4));
        let json = serde_json::to_string(&at).unwrap_or_default();
        assert_eq!(
            serde_json::from_str::<Personal<(f64, f64)>>(&json).ok(),
            Some(at)
        );
    }

    #[test]
    fn a_known_value_never_shows_in_debug() {
        let phone = Personal::from("+4915112345678");
        assert_eq!(phone.read().map(String::as_str), Ok("+4915112345678"));
        assert_eq!(format!("{phone:?}"), "***");
    }
}
