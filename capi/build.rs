//! Gives the shared library an ELF SONAME, `libpcgrad.so.0` (the major
//! version of the C ABI; bump it when the ABI breaks), so that programs
//! linked against it record that name and a packaged library can be
//! upgraded in place. `scripts/install.sh` installs the file under that
//! name with `libpcgrad.so` as the link-time symlink.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let family = std::env::var("CARGO_CFG_TARGET_FAMILY").unwrap_or_default();
    if family == "unix" && !matches!(os.as_str(), "macos" | "ios") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpcgrad.so.0");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
