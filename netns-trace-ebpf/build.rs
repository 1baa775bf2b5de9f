//! Rebuild when the bpf-linker binary changes (it is an undeclared build dependency).
fn main() {
    match which::which("bpf-linker") {
        Ok(p) => println!("cargo:rerun-if-changed={}", p.display()),
        Err(e) => println!("cargo:warning=bpf-linker not found ({e}); run `cargo xtask bootstrap`"),
    }
}
