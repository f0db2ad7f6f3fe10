//! Bad input gets a clear 4xx, the service keeps serving, and nothing is appended.
//!
//! Every body here is correctly signed, so it gets past authentication and reaches the
//! parser: the corpus tests what a provider (or someone holding its secret) could send.

use super::support::*;

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let deep = "[".repeat(10_000).into_bytes();
    let deep_object = "{\"a\":".repeat(5_000).into_bytes();
    vec![
        ("empty", b"".to_vec()),
        ("only whitespace", b"   \n\t ".to_vec()),
        (
            "truncated object",
            b"{\"object\":\"whatsapp_business_account\",\"entry\":[".to_vec(),
        ),
        (
            "truncated string",
            b"{\"update_id\":12,\"message\":{\"text\":\"hal".to_vec(),
        ),
        ("a bare number", b"42".to_vec()),
        ("a bare string", b"\"hello\"".to_vec()),
        ("null", b"null".to_vec()),
        ("an array", b"[1,2,3]".to_vec()),
        ("deeply nested arrays", deep),
        ("deeply nested objects", deep_object),
        ("invalid utf-8", b"{\"text\":\"\xff\xfe\xfd\"}".to_vec()),
        (
            "a lone surrogate escape",
            b"{\"update_id\":1,\"message\":{\"text\":\"\\ud800\"}}".to_vec(),
        ),
        (
            "a NUL byte outside strings",
            b"{\"update_id\":1}\x00".to_vec(),
        ),
        ("trailing garbage", b"{\"update_id\":1} trailing".to_vec()),
        ("single quotes", b"{'update_id': 1}".to_vec()),
        (
            "a huge number for an id",
            b"{\"update_id\":1e999,\"event\":\"message\",\"object\":1}".to_vec(),
        ),
    ]
}

#[tokio::test]
async fn a_malformed_corpus_gets_4xx_and_appends_nothing_while_the_service_keeps_serving() {
    let h = Harness::start().await;
    let mut cases = 0;
    for channel in CHANNELS {
        for (name, body) in corpus() {
            let status = post(&h, channel, body, "application/json").await;
            assert!((400..500).contains(&status), "{channel:?} {name}: {status}");
            cases += 1;
        }
        let status = post(&h, channel, b"{}".to_vec(), "text/plain").await;
        assert_eq!(status, 415, "{channel:?}: wrong content type");
        let status = post(
            &h,
            channel,
            vec![b' '; 4 * 1024 * 1024 + 1],
            "application/json",
        )
        .await;
        assert_eq!(status, 413, "{channel:?}: body over 4 MiB");
        cases += 2;
    }
    assert!(cases >= 40, "{cases} cases");
    assert_eq!(h.events().await.len(), 0, "nothing appended");

    // And it still serves.
    for channel in CHANNELS {
        let webhook = h.sim.webhook(channel, &customer_id(channel, 9), "noch da?");
        assert_eq!(h.sim.deliver(&h.url, &webhook).await.unwrap().status, 200);
    }
    assert_eq!(
        h.events().await.len(),
        2 * CHANNELS.len(),
        "one ticket opened and one message per channel"
    );
}
