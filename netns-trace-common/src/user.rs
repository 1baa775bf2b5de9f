//! Userspace-only glue: lets aya copy these types into and out of maps and globals.
use crate::{offsets::KernelOffsets, record::*};

// SAFETY: all of these are #[repr(C)] structs of integers and integer arrays with explicit
// padding, valid for any bit pattern.
unsafe impl aya::Pod for KernelOffsets {}
unsafe impl aya::Pod for NetnsId {}
unsafe impl aya::Pod for EventHeader {}
unsafe impl aya::Pod for PacketBudget {}
