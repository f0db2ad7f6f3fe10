//! Attachments: the webhook appends the customer's message with the provider's reference
//! and answers `200`; the media consumer fetches afterwards, from the log, and records
//! whether the attachment was stored or could not be fetched.

use helpline_domain::{Channel, Event, Media, MessageBody};
use helpline_eventstore::EventStore;
use helpline_ingress::IngressConfig;
use helpline_testkit::simulator::MediaRef;

use crate::support::*;

fn photo() -> Vec<u8> {
    (0..200_000u32).map(|n| (n % 251) as u8).collect()
}

/// The customer's caption as the channel carries it: beside the attachment, or (Messenger,
/// web chat, Apple) as a message part of its own.
fn caption_of(channel: Channel, media: &Media, events: &[(helpline_domain::TicketId, Event)]) {
    let has_caption = if matches!(
        channel,
        Channel::Messenger | Channel::WebChat | Channel::AppleMessages
    ) {
        events.iter().any(|(_, event)| {
            matches!(event, Event::CustomerMessageReceived { body: MessageBody::Text(text), .. }
                if text.expose() == "Typenschild")
        })
    } else {
        media.caption.as_ref().map(|c| c.expose().as_str()) == Some("Typenschild")
    };
    assert!(
        has_caption,
        "{channel:?}: the customer's caption is in the log"
    );
}

/// The object is in the media bucket, sealed: the photo's bytes are not in it, and it
/// opens under the customer's key to the photo, until the customer is erased.
async fn check_stored_sealed(h: &Harness, channel: Channel, customer: &str, object: &str) {
    let photo = photo();
    let bucket = h
        .store
        .jetstream()
        .get_object_store("helpline-de-media")
        .await
        .unwrap();
    let mut stored = bucket.get(object).await.unwrap();
    let mut sealed = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut stored, &mut sealed)
        .await
        .unwrap();
    assert!(
        !sealed
            .windows(64)
            .any(|w| photo.windows(64).next() == Some(w)),
        "{channel:?}: the photo is stored sealed"
    );
    let customer = h
        .store
        .customer_id(channel, &h.sim.customer_address(channel, customer));
    let bytes = h
        .store
        .open_attachment(&customer, object, &sealed)
        .await
        .unwrap();
    assert!(
        bytes.as_ref() == Some(&photo),
        "{channel:?}: the stored object is the customer's photo"
    );
    h.store.erase_customer_key(&customer).await.unwrap();
    let erased = h
        .store
        .open_attachment(&customer, object, &sealed)
        .await
        .unwrap();
    assert!(erased.is_none(), "{channel:?}: erased with the customer");
}

async fn has_object(store: &EventStore, object: &str) -> bool {
    let bucket = store
        .jetstream()
        .get_object_store("helpline-de-media")
        .await
        .unwrap();
    bucket.info(object).await.is_ok()
}

async fn deliver_image(h: &Harness, channel: Channel, customer: &str, media: &MediaRef) {
    let webhook = h
        .sim
        .webhook_image(channel, customer, media, Some("Typenschild"));
    let response = h.sim.deliver(&h.url, &webhook).await.unwrap();
    assert_eq!(response.status, 200, "{channel:?}: {}", response.body);
}

#[tokio::test]
async fn an_image_is_fetched_after_the_message_and_kept_sealed_in_the_media_store() {
    let h = Harness::start().await;
    for channel in CHANNELS {
        let media = h.sim.add_media(photo(), "image/jpeg");
        let customer = customer_id(channel, 6);
        deliver_image(&h, channel, &customer, &media).await;

        let (message, received, outcome) = h.attachment_outcome(&media).await;
        assert_eq!(
            received.object.expose(),
            "",
            "{channel:?}: the message names no object"
        );
        caption_of(channel, &received, &h.events().await);
        let Event::AttachmentStored {
            message: of,
            object,
            size_bytes,
            mime_type,
        } = outcome
        else {
            panic!("{channel:?}: not stored: {outcome:?}");
        };
        assert_eq!(of, message);
        assert_eq!(object, message.0.to_string(), "{channel:?}");
        assert_eq!(size_bytes, photo().len() as u64, "{channel:?}");
        assert_eq!(mime_type, "image/jpeg", "{channel:?}");
        check_stored_sealed(&h, channel, &customer, &object).await;
        assert_eq!(
            h.sim.media_downloads(&media),
            1,
            "{channel:?}: fetched once"
        );
    }
}

#[tokio::test]
async fn a_webhook_whose_attachment_cannot_be_reached_is_answered_200_and_the_attachment_recorded_as_not_fetched()
 {
    let config = IngressConfig {
        media_fetch_attempts: MEDIA_ATTEMPTS,
        ..IngressConfig::default()
    };
    // Nothing fetches yet: the answer cannot have waited for the provider's media server.
    let h = Harness::routes_only(&config).await;
    let mut sent = Vec::new();
    for channel in CHANNELS {
        let media = h.sim.add_media(photo(), "image/jpeg");
        h.sim.set_media_reachable(&media, false);
        let customer = customer_id(channel, 8);
        deliver_image(&h, channel, &customer, &media).await;
        assert_eq!(h.sim.media_downloads(&media), 0, "{channel:?}");
        let events = h.events().await;
        let received = events
            .iter()
            .find_map(|(_, event)| match event {
                Event::CustomerMessageReceived {
                    body: MessageBody::Media(m),
                    ..
                } if refers_to(m, &media) => Some(m.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{channel:?}: the message is in the log"));
        caption_of(channel, &received, &events);
        sent.push((channel, media));
    }

    // The consumer, started after the webhooks, finds the attachments in the log.
    let _media = h.start_media(&config);
    for (channel, media) in &sent {
        let (message, _, outcome) = h.attachment_outcome(media).await;
        let Event::AttachmentNotFetched {
            message: of,
            reason,
        } = outcome
        else {
            panic!("{channel:?}: recorded as {outcome:?}");
        };
        assert_eq!(of, message);
        assert!(reason.contains("503"), "{channel:?}: {reason}");
        assert!(
            !reason.contains("http") && !reason.contains(&h.sim.base_url()),
            "{channel:?}: no URL in the reason: {reason}"
        );
        assert_eq!(
            h.sim.media_downloads(media),
            MEDIA_ATTEMPTS as usize,
            "{channel:?}: tried as often as configured"
        );
        assert!(!has_object(&h.store, &message.0.to_string()).await);
    }
}

#[tokio::test]
async fn an_attachment_whose_server_comes_back_before_the_retries_run_out_is_stored_sealed() {
    let h = Harness::start_with(IngressConfig {
        media_fetch_attempts: 12,
        ..IngressConfig::default()
    })
    .await;
    for channel in [Channel::WhatsApp, Channel::Telegram, Channel::Viber] {
        let media = h.sim.add_media(photo(), "image/jpeg");
        h.sim.set_media_reachable(&media, false);
        let customer = customer_id(channel, 9);
        deliver_image(&h, channel, &customer, &media).await;
        for _ in 0..1200 {
            if h.sim.media_downloads(&media) >= 2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(
            h.sim.media_downloads(&media) >= 2,
            "{channel:?}: tried and failed"
        );
        h.sim.set_media_reachable(&media, true);

        let (message, _, outcome) = h.attachment_outcome(&media).await;
        let Event::AttachmentStored { object, .. } = outcome else {
            panic!("{channel:?}: recorded as {outcome:?}");
        };
        assert_eq!(object, message.0.to_string());
        check_stored_sealed(&h, channel, &customer, &object).await;
    }
}

#[tokio::test]
async fn an_attachment_over_the_cap_is_recorded_as_not_fetched_and_not_kept() {
    let h = Harness::start_with(IngressConfig {
        max_media_bytes: 1024,
        media_fetch_attempts: MEDIA_ATTEMPTS,
        ..IngressConfig::default()
    })
    .await;
    let media = h.sim.add_media(vec![7; 4096], "application/pdf");
    let webhook = h.sim.webhook_image(
        Channel::Viber,
        &customer_id(Channel::Viber, 7),
        &media,
        None,
    );
    assert_eq!(h.sim.deliver(&h.url, &webhook).await.unwrap().status, 200);

    let (message, _, outcome) = h.attachment_outcome(&media).await;
    let Event::AttachmentNotFetched { reason, .. } = outcome else {
        panic!("recorded as {outcome:?}");
    };
    assert!(reason.contains("cap of 1024 bytes"), "{reason}");
    assert_eq!(h.sim.media_downloads(&media), 1, "not retried");
    assert!(!has_object(&h.store, &message.0.to_string()).await);
}

/// The attachment's outcome, which must be a refusal recorded at the first try.
async fn refused_at_once(h: &Harness, media: &MediaRef, what: &str) {
    let (_, _, outcome) = h.attachment_outcome(media).await;
    let Event::AttachmentNotFetched { reason, .. } = outcome else {
        panic!("{what}: fetched: {outcome:?}");
    };
    assert!(reason.starts_with("refused"), "{what}: {reason}");
    assert!(
        !reason.contains("127.0.0.1") && !reason.contains("localhost"),
        "{what}: the reason names no URL: {reason}"
    );
}

#[tokio::test]
async fn attachment_urls_inside_the_network_or_off_the_channels_media_hosts_are_refused() {
    let config = IngressConfig {
        media_fetch_attempts: MEDIA_ATTEMPTS,
        ..IngressConfig::default()
    };
    let h = Harness::routes_only(&config).await;
    let simulator = h.sim.base_url();
    let port = simulator.rsplit(':').next().unwrap().to_owned();
    // The web chat may fetch from the domain `localhost` (https, public addresses only)
    // and from the simulator's exact origin.
    let _media = h.start_media(&IngressConfig {
        media_hosts: {
            let mut hosts = helpline_ingress::media_policy::MediaHostsConfig::default();
            hosts.set(
                Channel::WebChat,
                vec!["localhost".to_owned(), simulator.clone()],
            );
            hosts
        },
        ..config
    });
    let served = h.sim.add_media(photo(), "image/jpeg");
    let pointing_at = |url: String| MediaRef {
        url,
        ..served.clone()
    };
    let attacks = [
        // Not https.
        (
            "plain http",
            pointing_at(format!("http://localhost:{port}/media/{}", served.id)),
        ),
        // A listed name that resolves to loopback.
        (
            "a name resolving to loopback",
            pointing_at(format!("https://localhost:{port}/media/{}", served.id)),
        ),
        // Addresses written out.
        (
            "loopback",
            pointing_at(format!("https://127.0.0.1:{port}/media/{}", served.id)),
        ),
        (
            "cloud metadata",
            pointing_at("https://169.254.169.254/latest/meta-data/".to_owned()),
        ),
        (
            "a private range",
            pointing_at("https://10.0.0.7/x.jpg".to_owned()),
        ),
        // The allowed origin handing the download on to helpline's own network.
        (
            "a redirect inside",
            pointing_at(format!(
                "{simulator}/redirect?to=http%3A%2F%2Flocalhost%3A{port}%2Fmedia%2F{}",
                served.id
            )),
        ),
        // A host nobody listed.
        (
            "an unlisted host",
            pointing_at("https://attacker.example/x.jpg".to_owned()),
        ),
    ];
    for (n, (what, media)) in attacks.iter().enumerate() {
        let customer = customer_id(Channel::WebChat, 100 + n as u32);
        deliver_image(&h, Channel::WebChat, &customer, media).await;
        refused_at_once(&h, media, what).await;
    }
    assert_eq!(h.sim.media_downloads(&served), 0, "nothing was downloaded");

    // The allowed origin itself still serves.
    let allowed = h.sim.add_media(photo(), "image/jpeg");
    deliver_image(
        &h,
        Channel::WebChat,
        &customer_id(Channel::WebChat, 99),
        &allowed,
    )
    .await;
    let (_, _, outcome) = h.attachment_outcome(&allowed).await;
    assert!(
        matches!(outcome, Event::AttachmentStored { .. }),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn a_tickets_attachments_stop_being_kept_at_its_quota() {
    // Room for one photo, not two.
    let config = IngressConfig {
        max_media_bytes_per_ticket: photo().len() as u64 * 3 / 2,
        media_fetch_attempts: MEDIA_ATTEMPTS,
        ..IngressConfig::default()
    };
    let h = Harness::start_with(config).await;
    let channel = Channel::WhatsApp;
    let customer = customer_id(channel, 7);
    let first = h.sim.add_media(photo(), "image/jpeg");
    deliver_image(&h, channel, &customer, &first).await;
    let (_, _, outcome) = h.attachment_outcome(&first).await;
    assert!(
        matches!(outcome, Event::AttachmentStored { .. }),
        "{outcome:?}"
    );

    let second = h.sim.add_media(photo(), "image/jpeg");
    deliver_image(&h, channel, &customer, &second).await;
    let (message, _, outcome) = h.attachment_outcome(&second).await;
    let Event::AttachmentNotFetched { reason, .. } = outcome else {
        panic!("kept past the quota: {outcome:?}");
    };
    assert!(reason.contains("quota"), "{reason}");
    assert!(
        !has_object(&h.store, &message.0.to_string()).await,
        "nothing stored"
    );

    // Another customer's ticket has its own quota.
    let other = h.sim.add_media(photo(), "image/jpeg");
    deliver_image(&h, channel, &customer_id(channel, 8), &other).await;
    let (_, _, outcome) = h.attachment_outcome(&other).await;
    assert!(
        matches!(outcome, Event::AttachmentStored { .. }),
        "{outcome:?}"
    );
}
