//! A counting relay between one client connection and nats-server, for the round-trip
//! rows: it passes every byte through unchanged and reads the client's side of the NATS
//! protocol on the way, so that what the services send is counted by kind, not guessed.
//!
//! A round trip is a message the client sends with a reply subject (`PUB <subject>
//! <reply> …`, `HPUB <subject> <reply> …`): a JetStream publish awaiting its ack, a KV
//! put or get, a Direct Get, an API call, a pull request. Consumer acknowledgements go
//! without a reply subject and nobody waits on them: they are counted apart, as
//! fire-and-forget messages. `SUB`, `UNSUB`, `PING` and `PONG` are not messages.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// What the client side sent so far, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub(super) struct Sent {
    /// Messages with a reply subject: each one something the sender waits on.
    pub requests: u64,
    /// Messages without one: acknowledgements and plain publishes.
    pub one_way: u64,
}

impl Sent {
    pub fn messages(&self) -> u64 {
        self.requests + self.one_way
    }

    pub fn since(&self, earlier: Sent) -> Sent {
        Sent {
            requests: self.requests - earlier.requests,
            one_way: self.one_way - earlier.one_way,
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    requests: AtomicU64,
    one_way: AtomicU64,
}

/// A relay on a loopback port of its own, counting what passes from clients to the
/// server. Stops relaying when dropped.
#[derive(Debug)]
pub(super) struct Tap {
    url: String,
    counts: Arc<Counts>,
    stop: CancellationToken,
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Tap {
    /// Relays connections on a new loopback port to the server at `server` (`host:port`).
    pub async fn start(server: String) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot bind the counting relay")?;
        let url = format!("nats://{}", listener.local_addr()?);
        let counts = Arc::new(Counts::default());
        let stop = CancellationToken::new();
        let (task_counts, task_stop) = (counts.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = task_stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let (server, counts, stop) =
                    (server.clone(), task_counts.clone(), task_stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = stop.cancelled() => {}
                        outcome = relay(client, &server, &counts) => {
                            if let Err(e) = outcome {
                                tracing::debug!(error = %e, "counting relay connection ended");
                            }
                        }
                    }
                });
            }
        });
        Ok(Self { url, counts, stop })
    }

    /// Where clients connect instead of the server.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn sent(&self) -> Sent {
        Sent {
            requests: self.counts.requests.load(Ordering::Relaxed),
            one_way: self.counts.one_way.load(Ordering::Relaxed),
        }
    }
}

async fn relay(client: TcpStream, server: &str, counts: &Counts) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let upstream = TcpStream::connect(server).await?;
    upstream.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = upstream.into_split();
    let to_server = async {
        let mut parser = Parser::default();
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = client_read.read(&mut buffer).await?;
            if read == 0 {
                return server_write.shutdown().await;
            }
            let chunk = &buffer[..read];
            parser.feed(chunk, counts);
            server_write.write_all(chunk).await?;
        }
    };
    let to_client = async {
        tokio::io::copy(&mut server_read, &mut client_write).await?;
        client_write.shutdown().await
    };
    tokio::try_join!(to_server, to_client).map(|_| ())
}

/// Reads the client's protocol as it streams past: operation lines, and the payloads
/// of `PUB`/`HPUB`, which are skipped by their stated length (a payload may hold
/// anything, line ends included).
#[derive(Debug, Default)]
struct Parser {
    /// An operation line not yet ended.
    line: Vec<u8>,
    /// Payload bytes (with their closing `\r\n`) still to pass before the next line.
    skip: usize,
}

impl Parser {
    fn feed(&mut self, mut chunk: &[u8], counts: &Counts) {
        while !chunk.is_empty() {
            if self.skip > 0 {
                let passed = self.skip.min(chunk.len());
                self.skip -= passed;
                chunk = &chunk[passed..];
                continue;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.line.extend_from_slice(&chunk[..end]);
                    chunk = &chunk[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.skip = operation(&line, counts);
                }
                None => {
                    self.line.extend_from_slice(chunk);
                    chunk = &[];
                }
            }
        }
    }
}

/// Counts one operation line; returns the payload bytes that follow it.
fn operation(line: &[u8], counts: &Counts) -> usize {
    let line = String::from_utf8_lossy(line);
    let mut words = line.trim_end_matches('\r').split_ascii_whitespace();
    let op = words.next().unwrap_or("").to_ascii_uppercase();
    let args: Vec<&str> = words.collect();
    // PUB <subject> [reply] <bytes>; HPUB <subject> [reply] <header bytes> <total bytes>.
    let (with_reply, payload) = match op.as_str() {
        "PUB" => (args.len() == 3, args.last()),
        "HPUB" => (args.len() == 4, args.last()),
        _ => return 0,
    };
    if with_reply {
        counts.requests.fetch_add(1, Ordering::Relaxed);
    } else {
        counts.one_way.fetch_add(1, Ordering::Relaxed);
    }
    payload
        .and_then(|bytes| bytes.parse::<usize>().ok())
        .map_or(0, |bytes| bytes + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(chunks: &[&[u8]]) -> (u64, u64) {
        let counts = Counts::default();
        let mut parser = Parser::default();
        for chunk in chunks {
            parser.feed(chunk, &counts);
        }
        (
            counts.requests.load(Ordering::Relaxed),
            counts.one_way.load(Ordering::Relaxed),
        )
    }

    #[test]
    fn a_message_with_a_reply_subject_is_a_request_and_an_ack_is_one_way() {
        let protocol = b"CONNECT {}\r\nPING\r\nSUB _INBOX.x.* 1\r\n\
            HPUB helpline.de.ticket.07.t _INBOX.x.1 12 17\r\nNATS/1.0\r\n\r\nhello\r\n\
            PUB $JS.ACK.HELPLINE_DE.bot.1.2.3.4.5 0\r\n\r\n\
            PUB $KV.k.a _INBOX.x.2 3\r\nabc\r\nUNSUB 1\r\n";
        assert_eq!(counted(&[protocol]), (2, 1));
    }

    #[test]
    fn payloads_holding_line_ends_and_chunks_cut_anywhere_count_the_same() {
        let protocol: &[u8] = b"PUB a r 9\r\nPUB b 1\r\n\r\nPUB c 0\r\n\r\n";
        assert_eq!(
            counted(&[protocol]),
            (1, 1),
            "the payload's PUB is not an operation"
        );
        for cut in 0..protocol.len() {
            let (head, tail) = protocol.split_at(cut);
            assert_eq!(counted(&[head, tail]), (1, 1), "cut at {cut}");
        }
    }
}
