//! Specifications of the channel gateway, one module per channel plus the properties that
//! hold on all of them. Bodies follow the examples of the channel protocol reference.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod apple;
mod general;
mod malformed;
mod messenger;
mod properties;
mod support;
mod telegram;
mod viber;
mod web;
mod whatsapp;
