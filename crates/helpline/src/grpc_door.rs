//! The gRPC port's front door, the same discipline as the HTTP ports'
//! (`helpline_ingress::front_door`): at most `max_connections` open at once (one more is
//! closed as soon as it is accepted), and a connection that has not sent its first bytes
//! within the header timeout is closed. What HTTP/2 itself bounds (keep-alive pings,
//! streams per connection, header and message sizes, the time to answer) is set on the
//! server in `all.rs`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use helpline_ingress::front_door::{Door, Sampled};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// The connections `listener` accepts, through the door; never an error (a failed accept
/// is logged and the next one awaited).
pub fn incoming(listener: TcpListener, door: Door) -> impl Stream<Item = io::Result<Guarded>> {
    let open = Arc::new(Semaphore::new(door.max_connections.max(1)));
    let refused = Arc::new(Sampled::new());
    futures::stream::unfold(
        (listener, open, refused),
        move |(listener, open, refused)| async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "gRPC accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&open).try_acquire_owned() else {
                    helpline_telemetry::metrics::increment(
                        "helpline_grpc_connections_refused_total",
                        "gRPC connections closed at once because the port had its maximum open.",
                        &[],
                    );
                    if let Some(unsaid) = refused.due("connection") {
                        tracing::warn!(
                            max_connections = door.max_connections,
                            unsaid,
                            "gRPC connection refused: too many open"
                        );
                    }
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let guarded = Guarded {
                    stream,
                    _permit: permit,
                    first_bytes: Some(Box::pin(tokio::time::sleep(door.header_timeout))),
                };
                return Some((Ok(guarded), (listener, open, refused)));
            }
        },
    )
}

/// An accepted connection holding its place among the open ones.
pub struct Guarded {
    // Declared before the stream, so dropped before it: the place is free by the time
    // the caller sees the connection close, and a caller that then opens another is
    // never refused for a connection it already saw end.
    _permit: OwnedSemaphorePermit,
    stream: TcpStream,
    /// Until the caller's first bytes: when they must have come.
    first_bytes: Option<Pin<Box<Sleep>>>,
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.first_bytes = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                let expired = this
                    .first_bytes
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "nothing sent within the handshake timeout",
                    )))
                } else {
                    Poll::Pending
                }
            }
            failed => failed,
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}
