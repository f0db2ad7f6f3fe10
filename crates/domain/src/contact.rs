//! A customer's address on a channel, in the one form helpline stores it and derives the
//! customer's pseudonym from.
//!
//! The pseudonym is a keyed hash of channel and contact, so two spellings of one phone
//! number would be two customers: a second ticket chain on intake, and an erasure or
//! export by the other spelling that finds nobody. [`normalize`] is the one place a
//! contact gets its stored form; intake applies it to what a provider sends, privacy to
//! what an operator types.

use thiserror::Error;

use crate::event::Channel;

/// Digits of an international phone number without its `+`: E.164 allows at most 15, and
/// 8 keeps out what is surely a typo or a national number without its country code.
pub const PHONE_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;

/// Why an address cannot be a customer's on its channel. The messages never repeat the
/// address: they end up in logs and API answers, and the address is personal data.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum InvalidContact {
    #[error("the address is empty")]
    Empty,

    #[error(
        "a phone number may hold only digits, a leading + or 00, and spaces, dashes, dots, \
         parentheses or slashes between them"
    )]
    NotAPhoneNumber,

    #[error(
        "a national phone number (it starts with a single 0); give it in the international \
         form, with + or 00 and the country code"
    )]
    National,

    #[error(
        "a national trunk prefix (0) after the country code; leave it out, e.g. +49 151 … \
         rather than +49 (0)151 …"
    )]
    TrunkPrefix,

    #[error("a country code never starts with 0")]
    CountryCode,

    #[error("an international phone number has 8 to 15 digits with its country code, not {digits}")]
    Length { digits: usize },
}

/// The customer's address on `channel` as helpline stores it, from any spelling of it.
///
/// - **WhatsApp** addresses customers by phone number or, for a customer who has a
///   username and hides their number, by their business-scoped user id (BSUID,
///   `DE.1502576394655843`, kept exactly as Meta sends it: see [`is_whatsapp_user_id`]).
///   Its webhooks send a number in international form without `+` (`4915112345678`),
///   and that is the stored form.
///   Spaces, dashes, dots, parentheses and slashes are dropped, and a leading `+` or
///   `00` is the international prefix, so `+49 (151) 123-456-78` and `0049 151 12345678`
///   are that number too. A number with a single leading `0` is national: its country is
///   not guessed, it is refused ([`InvalidContact::National`]).
/// - **Messenger, Telegram, Viber, Apple Messages and web chat** name customers by ids the
///   provider makes up: only surrounding whitespace is dropped, the rest must match
///   exactly.
///
/// Normalizing a normalized address gives it back unchanged.
pub fn normalize(channel: Channel, address: &str) -> Result<String, InvalidContact> {
    let address = address.trim();
    if address.is_empty() {
        return Err(InvalidContact::Empty);
    }
    match channel {
        Channel::WhatsApp if is_whatsapp_user_id(address) => Ok(address.to_owned()),
        Channel::WhatsApp => phone_number(address),
        Channel::Messenger
        | Channel::Telegram
        | Channel::Viber
        | Channel::AppleMessages
        | Channel::WebChat => Ok(address.to_owned()),
    }
}

/// Whether `address` is a WhatsApp business-scoped user id: two capital letters (the
/// country), a dot, an optional `ENT.` (a parent BSUID, shared by a business's
/// portfolios), then 1 to 128 letters and digits. Meta sends it as `from_user_id` and
/// `user_id`, and a message to it names it as `recipient` instead of `to`.
pub fn is_whatsapp_user_id(address: &str) -> bool {
    let Some((country, id)) = address.split_once('.') else {
        return false;
    };
    let id = id.strip_prefix("ENT.").unwrap_or(id);
    country.len() == 2
        && country.bytes().all(|b| b.is_ascii_uppercase())
        && (1..=128).contains(&id.len())
        && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// A phone number in international form, digits only, without `+`.
fn phone_number(written: &str) -> Result<String, InvalidContact> {
    // "+49 (0)151 …" is a common way to write a German number, but the 0 is dialled only
    // from within the country; dropping the parentheses alone would keep it.
    let compact: String = written.chars().filter(|c| !c.is_whitespace()).collect();
    if compact.contains("(0)") {
        return Err(InvalidContact::TrunkPrefix);
    }
    let bare: String = compact
        .chars()
        .filter(|c| !matches!(c, '-' | '.' | '(' | ')' | '/'))
        .collect();
    let (international, digits) = match bare.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => match bare.strip_prefix("00") {
            Some(rest) => (true, rest),
            None => (false, bare.as_str()),
        },
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(InvalidContact::NotAPhoneNumber);
    }
    if digits.starts_with('0') {
        return Err(match international {
            true => InvalidContact::CountryCode,
            false => InvalidContact::National,
        });
    }
    if !PHONE_DIGITS.contains(&digits.len()) {
        return Err(InvalidContact::Length {
            digits: digits.len(),
        });
    }
    Ok(digits.to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use proptest::prelude::*;

    use super::*;

    const WA_ID: &str = "4915112345678";

    #[track_caller]
    fn check(channel: Channel, written: &str, expected: Result<&str, InvalidContact>) {
        assert_eq!(
            normalize(channel, written),
            expected.map(str::to_owned),
            "{channel:?} {written:?}"
        );
    }

    #[test]
    fn every_spelling_of_a_whatsapp_number_is_the_number_whatsapp_sends() {
        for written in [
            "4915112345678",
            "+4915112345678",
            "004915112345678",
            "0049 151 12345678",
            "+49 (151) 123-456-78",
            "+49 151 / 123 456 78",
            "+49.151.123.456.78",
            " +49 151 12345678\t",
            "+49\u{a0}151\u{a0}12345678",
        ] {
            check(Channel::WhatsApp, written, Ok(WA_ID));
        }
    }

    #[test]
    fn a_whatsapp_user_id_is_kept_exactly_as_meta_sends_it() {
        for id in [
            "DE.1502576394655843",
            "US.13491208655302741918",
            "US.ENT.11815799212886844830",
            "BR.abcXYZ019",
        ] {
            check(Channel::WhatsApp, id, Ok(id));
            check(Channel::WhatsApp, &format!(" {id}\n"), Ok(id));
        }
        let longest = format!("DE.{}", "7".repeat(128));
        check(Channel::WhatsApp, &longest, Ok(&longest));
        // Not a user id, and then not a phone number either.
        for written in [
            "de.1502576394655843",
            "DEU.15025",
            "DE.",
            "DE.15-02",
            "D.1502",
        ] {
            assert!(!is_whatsapp_user_id(written), "{written}");
            check(
                Channel::WhatsApp,
                written,
                Err(InvalidContact::NotAPhoneNumber),
            );
        }
        assert!(!is_whatsapp_user_id(&format!("DE.{}", "7".repeat(129))));
    }

    #[test]
    fn a_national_number_is_refused_rather_than_guessed() {
        check(
            Channel::WhatsApp,
            "0151 12345678",
            Err(InvalidContact::National),
        );
        check(
            Channel::WhatsApp,
            "(0151) 123-456-78",
            Err(InvalidContact::National),
        );
        check(
            Channel::WhatsApp,
            "+49 (0)151 12345678",
            Err(InvalidContact::TrunkPrefix),
        );
        check(
            Channel::WhatsApp,
            "+49 (0) 151 12345678",
            Err(InvalidContact::TrunkPrefix),
        );
        check(
            Channel::WhatsApp,
            "+0151 12345678",
            Err(InvalidContact::CountryCode),
        );
        check(
            Channel::WhatsApp,
            "000151 12345678",
            Err(InvalidContact::CountryCode),
        );
    }

    #[test]
    fn what_is_no_phone_number_is_refused() {
        check(Channel::WhatsApp, "", Err(InvalidContact::Empty));
        check(Channel::WhatsApp, "   ", Err(InvalidContact::Empty));
        check(Channel::WhatsApp, "+", Err(InvalidContact::NotAPhoneNumber));
        check(
            Channel::WhatsApp,
            "00",
            Err(InvalidContact::NotAPhoneNumber),
        );
        check(
            Channel::WhatsApp,
            "4915112345678x",
            Err(InvalidContact::NotAPhoneNumber),
        );
        check(
            Channel::WhatsApp,
            "++4915112345678",
            Err(InvalidContact::NotAPhoneNumber),
        );
        check(
            Channel::WhatsApp,
            "49+15112345678",
            Err(InvalidContact::NotAPhoneNumber),
        );
        check(
            Channel::WhatsApp,
            "+49 151 1234567８",
            Err(InvalidContact::NotAPhoneNumber),
        );
        check(
            Channel::WhatsApp,
            "anna",
            Err(InvalidContact::NotAPhoneNumber),
        );
        check(
            Channel::WhatsApp,
            "+49 151",
            Err(InvalidContact::Length { digits: 5 }),
        );
        check(
            Channel::WhatsApp,
            "4912345",
            Err(InvalidContact::Length { digits: 7 }),
        );
        check(Channel::WhatsApp, "12345678", Ok("12345678"));
        check(Channel::WhatsApp, "123456789012345", Ok("123456789012345"));
        check(
            Channel::WhatsApp,
            "+49 151 123456789012",
            Err(InvalidContact::Length { digits: 17 }),
        );
    }

    #[test]
    fn the_providers_ids_are_kept_as_they_are_but_for_surrounding_whitespace() {
        check(Channel::Telegram, " 700001 ", Ok("700001"));
        check(Channel::Telegram, "-100 700001", Ok("-100 700001"));
        check(Channel::Viber, "viber000001A=", Ok("viber000001A="));
        check(Channel::Messenger, "25000000000001", Ok("25000000000001"));
        check(Channel::Messenger, "+25000000000001", Ok("+25000000000001"));
        check(
            Channel::AppleMessages,
            "urn:mbid:AQAAY-x",
            Ok("urn:mbid:AQAAY-x"),
        );
        check(Channel::WebChat, "sess_00000001\n", Ok("sess_00000001"));
        for channel in Channel::ALL {
            check(channel, " \t", Err(InvalidContact::Empty));
        }
    }

    #[test]
    fn no_refusal_repeats_the_address() {
        for written in [
            "0151 98765432",
            "+49 (0)151 98765432",
            "+0987654321",
            "98765",
        ] {
            let refusal = normalize(Channel::WhatsApp, written)
                .unwrap_err()
                .to_string();
            assert!(!refusal.contains("98765"), "{refusal}");
        }
    }

    /// A number as someone might write it: with `+` or `00`, grouped by any separators.
    fn spelled(digits: String) -> impl Strategy<Value = (String, String)> {
        let prefix = prop::sample::select(vec!["", "+", "00", " +", "00 "]);
        let separators = prop::collection::vec(
            prop::sample::select(vec!["", "", " ", "-", ".", "/", " / ", "(", ")"]),
            digits.len(),
        );
        (prefix, separators).prop_map(move |(prefix, separators)| {
            let mut written = prefix.to_owned();
            for (digit, separator) in digits.chars().zip(separators) {
                written.push(digit);
                written.push_str(separator);
            }
            (written, digits.clone())
        })
    }

    proptest! {
        #[test]
        fn any_spelling_of_an_international_number_gives_its_digits(
            (written, digits) in "[1-9][0-9]{7,14}".prop_flat_map(spelled)
        ) {
            // A 0 alone in parentheses reads as a trunk prefix, refused on purpose.
            prop_assume!(!written.contains("(0)"));
            prop_assert_eq!(normalize(Channel::WhatsApp, &written), Ok(digits));
        }

        #[test]
        fn normalizing_is_idempotent(
            channel in prop::sample::select(Channel::ALL.to_vec()),
            written in "[ +0-9()./-]{0,24}|[ -~]{0,24}",
        ) {
            if let Ok(once) = normalize(channel, &written) {
                prop_assert_eq!(normalize(channel, &once), Ok(once.clone()));
                if channel == Channel::WhatsApp && !is_whatsapp_user_id(&once) {
                    prop_assert!(PHONE_DIGITS.contains(&once.len()));
                    prop_assert!(once.bytes().all(|b| b.is_ascii_digit()));
                    prop_assert!(!once.starts_with('0'));
                }
            }
        }
    }
}
