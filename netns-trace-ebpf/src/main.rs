//! netns-trace's kernel side.
//!
//! One module per subsystem under `probes/`. Every program is a thin wrapper that turns its
//! hook's arguments into plain addresses and calls a shared body, so the fentry, kprobe and
//! tracepoint variants of a probe emit identical records. Which variant runs is decided in
//! userspace (netns-trace/src/probes/registry.rs): this object carries them all, and only the
//! ones chosen for this kernel are loaded and verified.
#![no_std]
#![no_main]
#![allow(static_mut_refs)]

mod diag;
mod emit;
mod kernel;
mod maps;
mod probes;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
