//! The kernel/user ABI of netns-trace.
//!
//! Every record that crosses the ring buffer starts with [`EventHeader`]. Records are plain
//! `#[repr(C)]` structs of fixed-width integers with explicit padding; their sizes are asserted
//! at compile time so the eBPF object and the userspace decoder can never disagree silently.
//! No `bool`, `Option` or Rust enum crosses the boundary: record fields are integers, and the
//! `#[repr(u8)]` enums of [`record`] say which integers they may hold.
//!
//! Kind ids and enum discriminants live in one table, [`record`], fixed forever. A retired id
//! is never reused; a new kind gets the next free number.
#![no_std]

pub mod kernel;
pub mod offsets;
pub mod record;
#[cfg(feature = "user")]
mod user;

pub use record::*;
