//! A TCP proxy in front of nats-server that can lose one JetStream delivery on the way
//! to the client, as a connection through a failing cluster node or a consumer leader
//! that moves can: the server counts the event delivered, the client never sees it, and
//! the server sends it again only after the ack wait. The connection itself stays up.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Default)]
struct Plan {
    /// The subject whose next delivery is dropped.
    target: Option<String>,
    dropped: u32,
}

pub struct LossyProxy {
    pub url: String,
    plan: Arc<Mutex<Plan>>,
    dropped: Arc<Notify>,
}

impl LossyProxy {
    /// Listens on a free loopback port and forwards every connection to `server_port`.
    pub async fn start(server_port: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("nats://{}", listener.local_addr().unwrap());
        let plan = Arc::new(Mutex::new(Plan::default()));
        let dropped = Arc::new(Notify::new());
        let (p, d) = (plan.clone(), dropped.clone());
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect(("127.0.0.1", server_port)).await else {
                    continue;
                };
                tokio::spawn(forward(client, server, p.clone(), d.clone()));
            }
        });
        Self { url, plan, dropped }
    }

    /// Loses the next JetStream delivery of `subject` (only that one), runs `then`
    /// (which should make one), and returns its output once the delivery was lost.
    pub async fn lose_next_delivery_of<T>(
        &self,
        subject: &str,
        then: impl std::future::Future<Output = T>,
    ) -> T {
        let notified = self.dropped.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        self.plan.lock().unwrap().target = Some(subject.to_owned());
        let out = then.await;
        tokio::time::timeout(std::time::Duration::from_secs(10), notified)
            .await
            .expect("the delivery reached the proxy");
        out
    }

    pub fn dropped(&self) -> u32 {
        self.plan.lock().unwrap().dropped
    }
}

async fn forward(
    client: TcpStream,
    server: TcpStream,
    plan: Arc<Mutex<Plan>>,
    dropped: Arc<Notify>,
) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match server_read.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        while let Some(frame) = next_frame(&pending) {
            let bytes: Vec<u8> = pending.drain(..frame.len).collect();
            let lose = frame.delivery_of.is_some() && {
                let mut plan = plan.lock().unwrap();
                if plan.target.is_some() && plan.target == frame.delivery_of {
                    plan.target = None;
                    plan.dropped += 1;
                    true
                } else {
                    false
                }
            };
            if lose {
                dropped.notify_waiters();
            } else {
                out.extend_from_slice(&bytes);
            }
        }
        if client_write.write_all(&out).await.is_err() {
            return;
        }
    }
}

struct Frame {
    len: usize,
    /// The subject, for a JetStream delivery (a message whose reply is an ack subject).
    delivery_of: Option<String>,
}

/// The first whole protocol frame of `buf`: a control line, or a `MSG`/`HMSG` line with
/// its payload.
fn next_frame(buf: &[u8]) -> Option<Frame> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&buf[..line_end]).ok()?;
    let mut words = line.split_whitespace();
    let op = words.next().unwrap_or("").to_ascii_uppercase();
    if op != "MSG" && op != "HMSG" {
        return Some(Frame {
            len: line_end + 2,
            delivery_of: None,
        });
    }
    let words: Vec<&str> = line.split_whitespace().collect();
    let total: usize = words.last()?.parse().ok()?;
    let len = line_end + 2 + total + 2;
    if buf.len() < len {
        return None;
    }
    // MSG subject sid [reply] size; HMSG subject sid [reply] header-size size
    let fixed = if op == "MSG" { 4 } else { 5 };
    let reply = (words.len() == fixed + 1).then(|| words[3]);
    let delivery_of = reply
        .filter(|r| r.starts_with("$JS.ACK."))
        .map(|_| words[1].to_owned());
    Some(Frame { len, delivery_of })
}
