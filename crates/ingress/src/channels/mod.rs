//! One module per channel, each with its configuration, its adapter and the provider's
//! webhook shapes (see the channel protocol reference, `CHANNELS.md`).

pub mod messenger;
mod meta;
pub mod telegram;
pub mod viber;
pub mod web;
pub mod whatsapp;
