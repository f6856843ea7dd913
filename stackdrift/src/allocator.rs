//! Allocator options for the server roles.
//!
//! mimalloc reads its options from the environment while the process starts, before `main`,
//! and this crate has no unsafe code to call `mi_option_set`. So a server process that was
//! started without them re-executes itself once (same PID, same arguments) with:
//!
//! - `MIMALLOC_ALLOW_THP=0`: no transparent huge pages. mimalloc asks for them on its arenas;
//!   a 2 MiB page stays resident while any byte of it is in use, so the ingester's short-lived
//!   batch buffers kept whole huge pages alive.
//! - `MIMALLOC_PURGE_DELAY=100`: freed memory goes back to the OS after 100 ms instead of 1 s
//!   (10 s for arenas), before the next batch commit allocates its own.
//!
//! Measured on the ingest benchmark (BENCHMARKS.md): ingester peak RSS 436–448 MiB with both,
//! 653–816 MiB without, and no throughput change outside the run-to-run noise. An option the
//! user set keeps the user's value; `STACKDRIFT_ALLOCATOR_TUNED` marks the re-executed process
//! (set it to skip this altogether).

use std::ffi::OsString;

/// The options and their values.
pub(crate) const OPTIONS: [(&str, &str); 2] =
    [("MIMALLOC_ALLOW_THP", "0"), ("MIMALLOC_PURGE_DELAY", "100")];

/// Set in the re-executed process, so it does not try again.
pub(crate) const MARK: &str = "STACKDRIFT_ALLOCATOR_TUNED";

/// The options to add to an environment read by `get`; empty when the process is already
/// tuned or every option is set.
pub(crate) fn missing(get: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, &'static str)> {
    if get(MARK).is_some() {
        return Vec::new();
    }
    OPTIONS
        .iter()
        .filter(|(k, _)| get(k).is_none())
        .copied()
        .collect()
}

/// Re-executes this process with the missing options set. Returns only if nothing was
/// missing or the re-execution failed (then the process goes on with mimalloc's defaults).
pub(crate) fn reexec_tuned() {
    use std::os::unix::process::CommandExt;

    let missing = missing(|k| std::env::var_os(k));
    if missing.is_empty() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut args = std::env::args_os();
    let mut cmd = std::process::Command::new(exe);
    if let Some(arg0) = args.next() {
        cmd.arg0(arg0);
    }
    cmd.args(args).env(MARK, "1").envs(missing);
    let error = cmd.exec();
    eprintln!("stackdrift: warning: running with the allocator's default options: {error}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_options_the_user_did_not_set_are_added_and_only_once() {
        let none = |_: &str| None;
        assert_eq!(missing(none), OPTIONS.to_vec());
        let user = |k: &str| (k == "MIMALLOC_PURGE_DELAY").then(|| OsString::from("5"));
        assert_eq!(missing(user), vec![("MIMALLOC_ALLOW_THP", "0")]);
        let tuned = |k: &str| (k == MARK).then(|| OsString::from("1"));
        assert!(missing(tuned).is_empty());
    }
}
