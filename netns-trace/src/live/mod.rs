//! The live side: reading the ring buffer, and the userspace observations (mountinfo,
//! interfaces) that turn syscall-level records into pins.
pub mod enrich;
pub mod pipeline;
pub mod source;
