//! helpline's wire contracts, generated from `proto/helpline/v1/` — and nothing else.
//!
//! The `.proto` files are the source of truth; this crate only compiles them (see
//! `build.rs`). Conversions to domain types live with the adapters that need them (the
//! event store, the gRPC services), never here.
//!
//! **Invariant:** no hand-written copy of a contract; every message and service type comes
//! from the generated code.

#![forbid(unsafe_code)]

/// Package `helpline.v1`.
#[allow(clippy::all, missing_debug_implementations)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/helpline.v1.rs"));
}

/// The encoded `FileDescriptorSet` of every helpline proto, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/helpline_descriptor.bin"));
