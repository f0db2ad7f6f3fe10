//! Stalled uploads, the attack on a webhook port's front door: a connection that declares a
//! large body, sends what the server takes and then nothing. Used by the front door's test
//! against `helpline all` and by `helpline bench`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Each write of the body.
const CHUNK: usize = 64 * 1024;

/// Opens `POST /webhooks/whatsapp` on `port` declaring `declared` bytes with a bogus
/// signature, and sends all but the last byte, as far as the server takes them: it stops
/// once a write has waited `write_stall` or failed. The connection is left open; with the
/// body bytes written (into the server and the sockets' buffers together).
pub async fn stall(
    port: u16,
    declared: usize,
    write_stall: Duration,
) -> std::io::Result<(TcpStream, usize)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let head = format!(
        "POST /webhooks/whatsapp HTTP/1.1\r\nHost: localhost\r\n\
         Content-Type: application/json\r\nX-Hub-Signature-256: sha256={}\r\n\
         Content-Length: {declared}\r\n\r\n",
        "0".repeat(64)
    );
    stream.write_all(head.as_bytes()).await?;
    let chunk = vec![b' '; CHUNK];
    let mut sent = 0;
    while sent < declared.saturating_sub(1) {
        let n = CHUNK.min(declared - 1 - sent);
        match tokio::time::timeout(write_stall, stream.write_all(&chunk[..n])).await {
            Ok(Ok(())) => sent += n,
            // Refused and closed, or nothing more taken: either way it stalls here.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok((stream, sent))
}

/// The status code the server answered `stream` with once it closed it before
/// `deadline` (0 when it said nothing first); `None` while it keeps it open.
pub async fn closed_by(stream: &mut TcpStream, deadline: Instant) -> Option<u16> {
    let mut said = Vec::new();
    let mut buffer = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => break,
            // Only the status line is kept.
            Ok(Ok(n)) if said.len() < 64 => said.extend_from_slice(&buffer[..n]),
            Ok(Ok(_)) => {}
        }
    }
    Some(
        String::from_utf8_lossy(&said)
            .split_whitespace()
            .nth(1)
            .and_then(|status| status.parse().ok())
            .unwrap_or(0),
    )
}
