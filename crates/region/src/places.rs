//! Service stores and the places by which the nearest one is found.
//!
//! A customer gives a postcode or a city ("10115 Berlin", "München"); the region's
//! `[[places]]` list turns it into coordinates (longest matching postcode prefix first,
//! then the city name), and the nearest `[[stores]]` entry by great-circle distance wins.

use helpline_domain::{StoreId, StoreReferral};
use serde::{Deserialize, Serialize};

use crate::RegionConfig;

/// `[[stores]]`: a local service store that takes referred cases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    pub id: StoreId,
    pub name: String,
    pub address: String,
    /// As the customer is told, e.g. `Mo–Fr 10:00–19:00, Sa 10:00–16:00`.
    pub opening_hours: String,
    pub latitude: f64,
    pub longitude: f64,
}

impl Store {
    pub fn referral(&self) -> StoreReferral {
        StoreReferral {
            store: self.id.clone(),
            name: self.name.clone(),
            address: self.address.clone(),
            opening_hours: self.opening_hours.clone(),
        }
    }
}

/// `[[places]]`: where a city or a postcode area lies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Place {
    /// The city, as customers write it, e.g. `Berlin`.
    pub name: String,
    /// Other spellings, e.g. `Munich` for `München`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Leading digits of the postcodes in the area, e.g. `["10", "12", "13", "14"]`.
    #[serde(default)]
    pub postcode_prefixes: Vec<String>,
    pub latitude: f64,
    pub longitude: f64,
}

impl RegionConfig {
    /// The place a customer's text names: a postcode (a run of 4 or 5 digits, the longest
    /// configured prefix wins), else a city name or alias as a whole word.
    pub fn locate(&self, text: &str) -> Option<&Place> {
        let lower = text.to_lowercase();
        let postcode = lower
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| (4..=5).contains(&run.len()));
        if let Some(postcode) = postcode {
            let by_prefix = self
                .places
                .iter()
                .flat_map(|place| place.postcode_prefixes.iter().map(move |p| (p, place)))
                .filter(|(prefix, _)| postcode.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len());
            if let Some((_, place)) = by_prefix {
                return Some(place);
            }
        }
        self.places.iter().find(|place| {
            std::iter::once(&place.name)
                .chain(&place.aliases)
                .any(|name| contains_word(&lower, &name.to_lowercase()))
        })
    }

    /// The store nearest to the place `text` names; `None` when no place matches or the
    /// region lists no store.
    pub fn nearest_store(&self, text: &str) -> Option<&Store> {
        let place = self.locate(text)?;
        self.stores.iter().min_by(|a, b| {
            let da = distance_km(place.latitude, place.longitude, a.latitude, a.longitude);
            let db = distance_km(place.latitude, place.longitude, b.latitude, b.longitude);
            da.total_cmp(&db)
        })
    }
}

/// Whether `needle` occurs in `haystack` bounded by non-alphanumeric characters.
pub(crate) fn contains_word(haystack: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    haystack.match_indices(needle).any(|(start, _)| {
        let before = haystack[..start].chars().next_back();
        let after = haystack[start + needle.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

/// Great-circle distance by the haversine formula.
fn distance_km(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    const EARTH_RADIUS_KM: f64 = 6371.0;
    let (phi1, phi2) = (lat1.to_radians(), lat2.to_radians());
    let dphi = (lat2 - lat1).to_radians();
    let dlambda = (lon2 - lon1).to_radians();
    let a = (dphi / 2.0).sin().powi(2) + phi1.cos() * phi2.cos() * (dlambda / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_KM * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: &str, latitude: f64, longitude: f64) -> Store {
        Store {
            id: StoreId::new(id),
            name: id.to_owned(),
            address: String::new(),
            opening_hours: String::new(),
            latitude,
            longitude,
        }
    }

    fn place(name: &str, prefixes: &[&str], latitude: f64, longitude: f64) -> Place {
        Place {
            name: name.to_owned(),
            aliases: vec![],
            postcode_prefixes: prefixes.iter().map(|p| (*p).to_owned()).collect(),
            latitude,
            longitude,
        }
    }

    fn germany() -> RegionConfig {
        RegionConfig {
            stores: vec![
                store("berlin-mitte", 52.52, 13.39),
                store("hamburg", 53.55, 9.99),
                store("muenchen", 48.14, 11.58),
            ],
            places: vec![
                place("Berlin", &["10", "12", "13", "14"], 52.52, 13.40),
                Place {
                    aliases: vec!["Munich".to_owned()],
                    ..place("München", &["80", "81"], 48.14, 11.58)
                },
                place("Potsdam", &["144"], 52.39, 13.06),
                place("Hamburg", &["20", "21", "22"], 53.55, 10.0),
            ],
            ..RegionConfig::default()
        }
    }

    #[test]
    fn a_postcode_finds_the_nearest_store() {
        let region = germany();
        let nearest = |text| region.nearest_store(text).map(|s| s.id.as_str());
        assert_eq!(nearest("10115 Berlin"), Some("berlin-mitte"));
        assert_eq!(nearest("PLZ 80331"), Some("muenchen"));
        assert_eq!(nearest("22767"), Some("hamburg"));
    }

    #[test]
    fn the_longest_postcode_prefix_wins() {
        let region = germany();
        assert_eq!(
            region.locate("14467").map(|p| p.name.as_str()),
            Some("Potsdam")
        );
        assert_eq!(
            region.locate("14050").map(|p| p.name.as_str()),
            Some("Berlin")
        );
    }

    #[test]
    fn a_city_name_or_alias_finds_the_place_as_a_whole_word() {
        let region = germany();
        assert_eq!(
            region.locate("in munich please").map(|p| p.name.as_str()),
            Some("München")
        );
        assert_eq!(
            region.locate("MÜNCHEN").map(|p| p.name.as_str()),
            Some("München")
        );
        assert_eq!(region.locate("Berliner Straße"), None);
        assert_eq!(region.nearest_store("somewhere"), None);
    }
}
