//! Release builds of the shopd binary lay out its code with the functions a start runs first
//! (`link/startup.order`, written by `benches/startup_order.py`): an idle server then has 3.3 MiB of its 14 MiB of
//! code mapped instead of 10.5 (docs/performance-history.md, "The run of 2026-12-04 18:48, and what it said").
//!
//! Only where the linker is rust-lld, Rust's default on x86_64 Linux; `SHOPD_LINK_ORDER=off` leaves it out (for
//! a linker without `--symbol-ordering-file`, such as GNU ld). A name the binary lacks is skipped.

use std::env;
use std::path::Path;

fn main() {
    println!("cargo:rerun-if-changed=link/startup.order");
    println!("cargo:rerun-if-env-changed=SHOPD_LINK_ORDER");
    let release = env::var("PROFILE").is_ok_and(|profile| profile == "release");
    let rust_lld = env::var("TARGET").is_ok_and(|target| target == "x86_64-unknown-linux-gnu");
    let off = env::var("SHOPD_LINK_ORDER").is_ok_and(|value| value == "off");
    if !release || !rust_lld || off {
        return;
    }
    let manifest = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let order = Path::new(&manifest).join("link/startup.order");
    println!(
        "cargo:rustc-link-arg-bin=shopd=-Wl,--symbol-ordering-file={}",
        order.display()
    );
    println!("cargo:rustc-link-arg-bin=shopd=-Wl,--no-warn-symbol-ordering");
}
