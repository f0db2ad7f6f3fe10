//! Personal data, kept out of logs by construction.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A value that is personal data (a phone number, a name, message text, a serial number).
///
/// `Debug` prints `***`, so a ticket or event can be logged whole without leaking it; the
/// value itself is reached only through [`Personal::expose`], which makes every use visible
/// in review. The event store encrypts these fields per customer so they can be erased.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Personal<T>(T);

impl<T> Personal<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Personal<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<&str> for Personal<String> {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl From<String> for Personal<String> {
    fn from(value: String) -> Self {
        Self(value)
    }
}
