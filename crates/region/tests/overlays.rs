//! Every region's file as it is deployed: each `deploy/k8s/overlays/<country>/helpline.toml`
//! parses into a valid [`RegionConfig`] for its own country, speaks only languages the bot
//! has flows for, and leads customers to its own stores.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use helpline_region::RegionConfig;

/// Germany and the 18 countries of the rollout, by the overlay folder's name.
const REGIONS: [&str; 19] = [
    "at", "be", "ch", "cz", "de", "dk", "es", "fi", "fr", "gb", "gr", "hu", "ie", "it", "lu", "nl",
    "pl", "pt", "se",
];

/// The languages the bot has (or will have) conversation flows for; a region may serve no
/// other.
const LANGUAGES_WITH_FLOWS: [&str; 14] = [
    "de", "en", "fr", "it", "es", "pt", "nl", "pl", "cs", "da", "sv", "fi", "el", "hu",
];

fn overlays_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/k8s/overlays")
}

/// One overlay's region file: the folder name, the top-level `region` key, and the rest.
struct RegionFile {
    folder: String,
    region: String,
    config: RegionConfig,
}

fn region_files() -> Vec<RegionFile> {
    let dir = overlays_dir();
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    let mut files: Vec<RegionFile> = entries
        .map(|entry| entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())))
        .filter(|entry| entry.path().join("helpline.toml").is_file())
        .map(|entry| {
            let folder = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path().join("helpline.toml");
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
            let mut table: toml::Table = toml::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not valid TOML: {e}", path.display()));
            let region = match table.remove("region") {
                Some(toml::Value::String(region)) => region,
                other => panic!(
                    "{}: top-level `region` must be a string, found {other:?}",
                    path.display()
                ),
            };
            let config = RegionConfig::from_region_file(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            RegionFile {
                folder,
                region,
                config,
            }
        })
        .collect();
    files.sort_by(|a, b| a.folder.cmp(&b.folder));
    files
}

#[test]
fn there_is_one_overlay_per_rollout_country() {
    let folders: Vec<String> = region_files().into_iter().map(|f| f.folder).collect();
    assert_eq!(folders.len(), 19, "{folders:?}");
    assert_eq!(folders, REGIONS);
}

#[test]
fn every_region_file_is_valid_for_its_own_country() {
    for file in region_files() {
        let folder = &file.folder;
        let config = &file.config;
        assert_eq!(
            config.validate(),
            vec![],
            "overlays/{folder}/helpline.toml has problems"
        );
        assert_eq!(file.region, *folder, "overlays/{folder}: `region`");
        assert_eq!(
            config.locale.country,
            folder.to_ascii_uppercase(),
            "overlays/{folder}: `locale.country`"
        );
        for language in &config.locale.languages {
            assert!(
                LANGUAGES_WITH_FLOWS.contains(&language.as_str()),
                "overlays/{folder}: the bot has no flow for language {language:?}"
            );
        }
        assert!(
            config.locale.languages.iter().any(|l| l == "en"),
            "overlays/{folder}: English is served everywhere"
        );
    }
}

#[test]
fn every_language_has_a_queue_and_every_queue_belongs_to_the_region() {
    for file in region_files() {
        let folder = &file.folder;
        let config = &file.config;
        let languages: BTreeSet<&str> =
            config.locale.languages.iter().map(String::as_str).collect();
        for queue in &config.queues {
            assert!(
                queue.id.as_str().starts_with(&format!("{folder}-")),
                "overlays/{folder}: queue id {} should start with \"{folder}-\"",
                queue.id
            );
            for language in &queue.languages {
                assert!(
                    languages.contains(language.as_str()),
                    "overlays/{folder}: queue {} speaks {language:?}, which [locale] lacks",
                    queue.id
                );
            }
        }
        for language in &languages {
            assert!(
                config
                    .queues
                    .iter()
                    .any(|queue| queue.languages.iter().any(|l| l == language)),
                "overlays/{folder}: no queue speaks {language:?}"
            );
        }
    }
}

#[test]
fn every_store_is_the_nearest_to_its_own_address() {
    for file in region_files() {
        let folder = &file.folder;
        let config = &file.config;
        assert!(
            !config.stores.is_empty(),
            "overlays/{folder}: no [[stores]]"
        );
        for store in &config.stores {
            let nearest = config.nearest_store(&store.address).map(|s| s.id.as_str());
            assert_eq!(
                nearest,
                Some(store.id.as_str()),
                "overlays/{folder}: the address {:?} does not lead to its own store",
                store.address
            );
        }
    }
}

#[test]
fn every_place_is_found_by_its_name_and_aliases() {
    for file in region_files() {
        let folder = &file.folder;
        let config = &file.config;
        assert!(
            !config.places.is_empty(),
            "overlays/{folder}: no [[places]]"
        );
        for place in &config.places {
            for name in std::iter::once(&place.name).chain(&place.aliases) {
                let found = config.locate(name).map(|p| p.name.as_str());
                assert_eq!(
                    found,
                    Some(place.name.as_str()),
                    "overlays/{folder}: {name:?} is not found as {:?}",
                    place.name
                );
            }
        }
    }
}
