//! Kernel probes: which exist (registry), what they read (btf), how they attach (loader),
//! and how their records become model events (decode).
pub mod btf;
pub mod decode;
pub mod diag;
pub mod loader;
pub mod registry;

pub use loader::{LoadError, LoadOptions, ModeRequest, ProbeStatus, Tracer, load, probe_mode};
