//! install.sh: POSIX sh (run under dash), --help, option errors, and no prompt without a
//! terminal. The full build-and-install runs in .ci/run, as the README gives it.

mod common;

use common::repo;
use std::process::{Command, Stdio};

fn sh(args: &[&str]) -> std::process::Output {
    // dash is Debian's /bin/sh: it rejects bashisms that bash would let through.
    let shell = if std::path::Path::new("/bin/dash").exists() {
        "/bin/dash"
    } else {
        "/bin/sh"
    };
    Command::new(shell)
        .arg(repo().join("install.sh"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn help_and_bad_options() {
    let out = sh(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("--prefix DIR") && help.contains("-y, --yes"),
        "{help}"
    );

    let out = sh(&["--bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown option '--bogus'"));

    let out = sh(&["--prefix"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--prefix needs a directory"));
}

#[test]
fn never_waits_for_an_answer_without_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let out = sh(&["--prefix", tmp.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run with -y"));
    assert!(!tmp.path().join("bin").exists(), "nothing is installed");
}

#[test]
fn a_truncated_script_runs_nothing() {
    let text = std::fs::read_to_string(repo().join("install.sh")).unwrap();
    assert_eq!(
        text.trim_end().lines().last(),
        Some("main \"$@\" || exit 1")
    );
}
