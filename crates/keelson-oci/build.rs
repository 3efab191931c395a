//! Builds the pause program (`pause/pause.rs`) as a small static binary for the target, so
//! the crate can embed it in the sandbox image it writes.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=pause/pause.rs");
    println!("cargo::rerun-if-changed=build.rs");
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let target = std::env::var("TARGET").expect("cargo sets TARGET");
    let manifest_dir =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = out_dir.join("pause");
    let mut cmd = Command::new(&rustc);
    // Cross builds: the linker cargo resolved for the target links the pause program too.
    println!("cargo::rerun-if-env-changed=RUSTC_LINKER");
    if let Ok(linker) = std::env::var("RUSTC_LINKER") {
        cmd.arg("-C").arg(format!("linker={linker}"));
    }
    let result = cmd
        .args([
            "--edition",
            "2021",
            "--crate-name",
            "pause",
            "--crate-type",
            "bin",
            "--target",
            &target,
        ])
        .args([
            "-C",
            "target-feature=+crt-static",
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
        ])
        .args(["-C", "strip=symbols", "-C", "codegen-units=1"])
        .arg("-o")
        .arg(&out)
        .arg(manifest_dir.join("pause/pause.rs"))
        .output();
    let output = match result {
        Ok(o) => o,
        Err(e) => panic!("building the pause image: cannot run {rustc}: {e}"),
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint = if stderr.contains("-lc") || stderr.contains("libc.a") || stderr.contains("crt1")
        {
            "the static C library is missing: install the libc6-dev package (apt-get install libc6-dev)"
        } else {
            "the pause program does not compile"
        };
        panic!("building the static pause binary failed: {hint}\n{stderr}");
    }
}
