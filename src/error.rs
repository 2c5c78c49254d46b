//! Error kinds a caller branches on, and the exit codes they map to (docs/exit-codes.md).

use std::fmt;

/// Exit codes. Stable: provisioning scripts branch on them.
pub mod exit {
    pub const OK: i32 = 0;
    /// An unexpected failure (a bug, or an I/O error nobody foresaw).
    pub const INTERNAL: i32 = 1;
    /// The command line was wrong (clap exits with it itself).
    pub const USAGE: i32 = 2;
    /// The node already runs on the target runtime with the settings the plan would write.
    pub const NOTHING_TO_DO: i32 = 3;
    /// A file on the node could not be understood (malformed TOML/JSON/YAML/env). Nothing changed.
    pub const BAD_INPUT: i32 = 4;
    /// The node cannot be migrated as it is (no kubelet, target runtime missing, unknown version,
    /// not root...). Nothing changed.
    pub const PREFLIGHT: i32 = 5;
    // 6 was "not implemented" in 0.1, before `migrate` could apply a plan; it stays unused.
    /// The migration failed and the node was rolled back to what it was.
    pub const ROLLED_BACK: i32 = 7;
    /// The migration failed and so did the rollback (or it was not allowed): a person must look.
    pub const ROLLBACK_FAILED: i32 = 8;
    /// The operator said no at a prompt. Nothing changed.
    pub const CANCELLED: i32 = 9;
    /// `verify`: the runtime did not answer, was not ready, or the test pull failed.
    pub const VERIFY_FAILED: i32 = 10;
    /// `images`: at least one image could not be carried over (the others were).
    pub const IMAGES_FAILED: i32 = 11;
    /// A signal (SIGINT, SIGTERM, SIGHUP, SIGQUIT) arrived before any change. Nothing changed.
    pub const INTERRUPTED: i32 = 12;
    /// A signal arrived during the cutover; the step in flight finished and the node was rolled
    /// back to what it was. (A signal once the kubelet runs verified on the new runtime lets the
    /// migration finish: exit 0.)
    pub const INTERRUPTED_ROLLED_BACK: i32 = 13;
    /// Another cri-migrate holds the node's lock. Nothing changed; try again once it ends.
    pub const LOCKED: i32 = 14;
    /// `status`: a migration is running, or was interrupted after it began its changes.
    pub const STATUS_IN_PROGRESS: i32 = 15;
    /// `status`: no migration has changed this node.
    pub const STATUS_NONE: i32 = 16;
}

/// A failure with a documented exit code. Its message is one paragraph: what, where, what to do.
#[derive(Debug)]
pub enum Failure {
    NothingToDo(String),
    BadInput {
        path: String,
        problem: String,
        fix: String,
    },
    Preflight {
        problem: String,
        fix: String,
    },
    /// The command line asks for something that cannot be done as asked (no terminal, no --yes).
    Usage(String),
    Cancelled(String),
    VerifyFailed(String),
    RolledBack {
        reason: String,
        backup: String,
    },
    RollbackFailed {
        reason: String,
        rollback: String,
        backup: String,
    },
    /// A signal before any change.
    Interrupted {
        signal: String,
    },
    /// A signal during the cutover, and the node rolled back.
    InterruptedRolledBack {
        signal: String,
        backup: String,
    },
    /// Another run holds the lock: who, since when.
    Locked {
        holder: String,
    },
}

impl Failure {
    /// The failure as a JSON document's `error`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"kind": self.kind(), "message": self.to_string(), "exit_code": self.exit_code()})
    }

    pub fn bad_input(
        path: impl Into<String>,
        problem: impl fmt::Display,
        fix: impl Into<String>,
    ) -> Self {
        Failure::BadInput {
            path: path.into(),
            problem: problem.to_string(),
            fix: fix.into(),
        }
    }

    pub fn preflight(problem: impl Into<String>, fix: impl Into<String>) -> Self {
        Failure::Preflight {
            problem: problem.into(),
            fix: fix.into(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::NothingToDo(_) => exit::NOTHING_TO_DO,
            Failure::BadInput { .. } => exit::BAD_INPUT,
            Failure::Preflight { .. } => exit::PREFLIGHT,
            Failure::Usage(_) => exit::USAGE,
            Failure::Cancelled(_) => exit::CANCELLED,
            Failure::VerifyFailed(_) => exit::VERIFY_FAILED,
            Failure::RolledBack { .. } => exit::ROLLED_BACK,
            Failure::RollbackFailed { .. } => exit::ROLLBACK_FAILED,
            Failure::Interrupted { .. } => exit::INTERRUPTED,
            Failure::InterruptedRolledBack { .. } => exit::INTERRUPTED_ROLLED_BACK,
            Failure::Locked { .. } => exit::LOCKED,
        }
    }

    /// A short stable name for JSON reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::NothingToDo(_) => "nothing-to-do",
            Failure::BadInput { .. } => "bad-input",
            Failure::Preflight { .. } => "preflight",
            Failure::Usage(_) => "usage",
            Failure::Cancelled(_) => "cancelled",
            Failure::VerifyFailed(_) => "verify-failed",
            Failure::RolledBack { .. } => "rolled-back",
            Failure::RollbackFailed { .. } => "rollback-failed",
            Failure::Interrupted { .. } => "interrupted",
            Failure::InterruptedRolledBack { .. } => "interrupted-rolled-back",
            Failure::Locked { .. } => "locked",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::NothingToDo(msg) => write!(f, "nothing to do: {msg}"),
            Failure::BadInput { path, problem, fix } => {
                write!(
                    f,
                    "cannot use {path}: {problem}. {fix} Nothing was changed."
                )
            }
            Failure::Preflight { problem, fix } => {
                write!(f, "{problem}. {fix} Nothing was changed.")
            }
            Failure::Usage(msg) | Failure::VerifyFailed(msg) => write!(f, "{msg}"),
            Failure::Cancelled(msg) => write!(f, "cancelled: {msg}. Nothing was changed."),
            Failure::RolledBack { reason, backup } => write!(
                f,
                "the migration failed and the node was rolled back: {reason}. Every file is as it was and every unit is in the state it had before the run (each checked after the rollback); the backup stays in {backup}."
            ),
            Failure::RollbackFailed { reason, rollback, backup } => write!(
                f,
                "the migration failed ({reason}) and the rollback did not complete ({rollback}). A person must look: the original files are in {backup}/files and {backup}/manifest.json lists them and the units' states; `cri-migrate rollback --backup {backup}` tries again."
            ),
            Failure::Interrupted { signal } => write!(
                f,
                "interrupted by {signal} before any change. Nothing was changed."
            ),
            Failure::InterruptedRolledBack { signal, backup } => write!(
                f,
                "interrupted by {signal} during the cutover: the step in flight finished and the node was rolled back. Every file is as it was and every unit is in the state it had before the run (each checked after the rollback); the backup and this run's journal stay in {backup}."
            ),
            Failure::Locked { holder } => write!(
                f,
                "another cri-migrate is working on this node: {holder}. Wait for it to end, then run again; if that process is gone, the lock went with it. Nothing was changed."
            ),
        }
    }
}

impl std::error::Error for Failure {}

/// A TOML parse error in one line: `line L, column C: message`.
pub fn toml_problem(text: &str, e: &toml_edit::TomlError) -> String {
    let message = e.message().split_whitespace().collect::<Vec<_>>().join(" ");
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let col = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
            format!("not valid TOML (line {line}, column {col}: {message})")
        }
        None => format!("not valid TOML ({message})"),
    }
}

/// The exit code for any error: a typed [`Failure`] anywhere in the chain decides, else 1.
pub fn exit_code_of(err: &anyhow::Error) -> i32 {
    err.chain()
        .find_map(|e| e.downcast_ref::<Failure>())
        .map(Failure::exit_code)
        .unwrap_or(exit::INTERNAL)
}

/// Version of the JSON documents' layout; bumped on an incompatible change.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// Every JSON document's envelope: the layout's version and the command, added to `body` (an
/// object of the command's own fields, `result` among them).
pub fn envelope(command: &str, mut body: serde_json::Value) -> serde_json::Value {
    if let Some(m) = body.as_object_mut() {
        m.insert("schema_version".into(), JSON_SCHEMA_VERSION.into());
        m.insert("command".into(), command.into());
    }
    body
}

/// A command's JSON document, in its envelope, written as one pretty-printed document.
pub fn write_envelope<W: std::io::Write + ?Sized>(
    out: &mut W,
    command: &str,
    body: serde_json::Value,
) -> std::io::Result<()> {
    let doc = serde_json::to_string_pretty(&envelope(command, body)).expect("JSON values print");
    writeln!(out, "{doc}")
}

/// The JSON form of a failure, for scripts that read stdout only.
pub fn error_json(command: &str, kind: &str, message: &str, exit_code: i32) -> serde_json::Value {
    envelope(
        command,
        serde_json::json!({
            "result": kind,
            "error": { "kind": kind, "message": message, "exit_code": exit_code },
        }),
    )
}
