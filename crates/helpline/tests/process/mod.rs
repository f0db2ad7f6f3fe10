//! A `helpline` process as the tests that start one see it: a free port to give it, its
//! HTTP probes, and a handle that kills it when the test ends. Each test file uses what
//! it needs of this.

#![allow(dead_code)]

use std::process::Child;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub fn free_port() -> u16 {
    helpline_testkit::free_port().unwrap_or_else(|e| panic!("{e}"))
}

/// The status code of `GET path`, or None while nothing listens.
pub async fn get(port: u16, path: &str) -> Option<u16> {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

/// Waits (at most 20 s) until `GET path` answers `status`.
pub async fn wait_for(port: u16, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = get(port, path).await;
        if got == Some(status) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never answered {status}, last {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The process, killed (and reaped) when the test is done with it.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
