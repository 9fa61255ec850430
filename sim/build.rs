//! Records what a seed's replay depends on, for `laxnet_sim::fingerprint`: the git commit (if
//! the source is a git checkout), a hash of the workspace's `Cargo.lock`, the compiler, the
//! target and the cfg flags that change what a run does.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let workspace = manifest.parent().map(Path::to_path_buf).unwrap_or_default();

    let lock = workspace.join("Cargo.lock");
    println!("cargo::rerun-if-changed={}", lock.display());
    let lock_hash = std::fs::read(&lock)
        .map_or_else(|_| "unknown".to_string(), |b| format!("{:016x}", fnv1a(&b)));
    println!("cargo::rustc-env=LAXSIM_FP_LOCK={lock_hash}");

    // The commit: rerun when HEAD moves (a commit, a checkout). A worktree's HEAD is in its own
    // git dir; branch refs may be loose files or packed, so watch the reflog of HEAD, which
    // every move appends to.
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(&workspace)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let commit = git(&["rev-parse", "HEAD"]).unwrap_or_else(|| "unknown".into());
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        let dir = PathBuf::from(dir);
        println!("cargo::rerun-if-changed={}", dir.join("HEAD").display());
        println!(
            "cargo::rerun-if-changed={}",
            dir.join("logs").join("HEAD").display()
        );
    }
    println!("cargo::rustc-env=LAXSIM_FP_GIT={commit}");

    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let version = Command::new(rustc)
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| {
            // "rustc 1.95.0 (59807616e 2026-04-14)" -> "1.95.0-59807616e"
            let s = String::from_utf8_lossy(&o.stdout).to_string();
            let mut w = s.split_whitespace().skip(1);
            let v = w.next()?.to_string();
            let h = w.next().map(|h| h.trim_start_matches('(').to_string());
            Some(h.map_or(v.clone(), |h| format!("{v}-{h}")))
        })
        .unwrap_or_else(|| "unknown".into());
    println!("cargo::rustc-env=LAXSIM_FP_RUSTC={version}");
    println!(
        "cargo::rustc-env=LAXSIM_FP_TARGET={}",
        std::env::var("TARGET").unwrap_or_else(|_| "unknown".into())
    );

    // cfg flags and features that change a run: tokio_unstable (seeded tokio inside turmoil
    // hosts), the planted bugs and the null cipher (the library itself differs), debug
    // assertions (checks that panic only in debug builds).
    let mut cfg = Vec::new();
    for (var, name) in [
        ("CARGO_CFG_TOKIO_UNSTABLE", "tokio_unstable"),
        ("CARGO_FEATURE_PLANTED_BUGS", "planted-bugs"),
        ("CARGO_FEATURE_NULL_CIPHER", "null-cipher"),
        ("CARGO_CFG_DEBUG_ASSERTIONS", "debug_assertions"),
    ] {
        if std::env::var_os(var).is_some() {
            cfg.push(name);
        }
    }
    let cfg = if cfg.is_empty() {
        "none".to_string()
    } else {
        cfg.join("+")
    };
    println!("cargo::rustc-env=LAXSIM_FP_CFG={cfg}");
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
