//! Records the git commit and commit count silica was built from (`build_commit`, `build_number` in bench
//! records, as llama.cpp's build info does). Outside a git checkout both are "unknown" / 0.

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=9", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let number = git(&["rev-list", "--count", "HEAD"]).unwrap_or_else(|| "0".into());
    println!("cargo:rustc-env=SILICA_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=SILICA_BUILD_NUMBER={number}");
    // Rebuild when the checked-out commit moves; only existing paths, or cargo would rerun every build.
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        for p in ["HEAD", "refs/heads", "packed-refs"] {
            let p = Path::new(&git_dir).join(p);
            if p.exists() {
                println!("cargo:rerun-if-changed={}", p.display());
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
