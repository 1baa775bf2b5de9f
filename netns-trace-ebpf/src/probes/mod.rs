//! One file per subsystem. Each program's doc comment names its hook and the hook's
//! prototype per kernel range; the registry in userspace lists the fallback chains.
pub mod arp;
pub mod mount;
pub mod netdev;
pub mod netns;
pub mod task;
