//! Test harness: real parts, started and cleaned up by the test itself.
//!
//! - [`nats`]: a real `nats-server` child process with JetStream, on a free loopback port
//!   with a temporary store; it can be stopped, killed, frozen and restarted on the same
//!   store.
//! - [`nats_cluster`]: three of them joined as one JetStream cluster, fsyncing every write,
//!   with the faults a cluster brings (a leader killed or stepping down, a node cut off,
//!   the whole cluster restarted).
//! - [`simulator`]: the channel simulator, every messaging provider played on localhost
//!   (webhooks signed as the providers sign them, their send APIs, faults, media), for tests
//!   and for a person trying helpline at a terminal.
//!
//! **Invariants:** nothing here relies on a server someone started by hand; every child
//! process is stopped when its handle is dropped, also when a test panics; no mock of NATS;
//! the simulator speaks the providers' wire formats exactly as `CHANNELS.md` describes them
//! and stops serving when dropped.

#![forbid(unsafe_code)]

pub mod bearer;
pub mod nats;
pub mod nats_cluster;
pub mod simulator;
pub mod upload;

pub use nats::{NatsServer, NatsServerBuilder, TestkitError, free_port};
pub use nats_cluster::NatsCluster;
pub use simulator::{Received, Simulator, SimulatorConfig};
