//! The harness itself: a real server that starts, keeps its store across a restart, and
//! leaves no process behind.

use std::time::Duration;

use helpline_testkit::NatsServer;

#[tokio::test]
async fn starts_with_jetstream_on_a_free_port() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let js = async_nats::jetstream::new(server.connect().await?);
    let account = js.query_account().await?;
    assert_eq!(account.streams, 0);
    Ok(())
}

/// A region reserves its buckets' limits (1 GiB for each media bucket) against the
/// server's file-store ceiling. By default the server takes 75% of the disk's free space
/// as that ceiling, so on a runner with a few GB free a region could not be created
/// although the tests write only megabytes. The harness claims the server's own 1 TB
/// ceiling instead: a reservation far beyond any test's disk is accepted.
#[tokio::test]
async fn reservations_do_not_depend_on_the_disks_free_space() -> anyhow::Result<()> {
    for server in [
        NatsServer::start().await?,
        NatsServer::builder().sync_always().start().await?,
    ] {
        let js = async_nats::jetstream::new(server.connect().await?);
        js.create_stream(async_nats::jetstream::stream::Config {
            name: "RESERVED".into(),
            subjects: vec!["reserved.>".into()],
            max_bytes: 500 * 1024 * 1024 * 1024,
            ..Default::default()
        })
        .await?;
        js.publish("reserved.one", "x".into()).await?.await?;
    }
    Ok(())
}

#[tokio::test]
async fn keeps_its_store_across_a_kill_and_restart() -> anyhow::Result<()> {
    let mut server = NatsServer::start().await?;
    let js = async_nats::jetstream::new(server.connect().await?);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "KEEP".into(),
        subjects: vec!["keep.>".into()],
        ..Default::default()
    })
    .await?;
    js.publish("keep.one", "x".into()).await?.await?;

    server.kill().await?;
    server.restart().await?;

    let js = async_nats::jetstream::new(server.connect().await?);
    let mut stream = js.get_stream("KEEP").await?;
    assert_eq!(stream.info().await?.state.messages, 1);
    Ok(())
}

#[tokio::test]
async fn dropping_the_handle_ends_the_process() -> anyhow::Result<()> {
    let server = NatsServer::start().await?;
    let pid = server.pid().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let store = server.store_dir().to_path_buf();
    drop(server);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid));
    assert!(!store.exists(), "temporary store is removed");
    Ok(())
}

fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.contains(") Z "))
        .unwrap_or(true)
}
