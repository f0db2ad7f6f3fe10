//! Test harness: real parts, started and cleaned up by the test itself.
//!
//! - [`nats`]: a real `nats-server` child process with JetStream, on a free loopback port
//!   with a temporary store; it can be stopped, killed and restarted on the same store.
//!
//! **Invariants:** nothing here relies on a server someone started by hand; every child
//! process is stopped when its handle is dropped, also when a test panics; no mock of NATS.

#![forbid(unsafe_code)]

pub mod nats;

pub use nats::{NatsServer, NatsServerBuilder, TestkitError};
