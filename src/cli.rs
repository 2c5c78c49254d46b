//! The command line (clap).

use crate::plan::Target;
use crate::version::Version;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

macro_rules! exit_codes {
    () => {
        "\
Exit codes:
  0  done (for --dry-run: the plan was printed)
  1  unexpected error (a bug, or an I/O error)
  2  command-line usage error
  3  nothing to do: the node already runs on the target runtime as cri-migrate would set it up
  4  a file on the node could not be understood; nothing was changed
  5  the node cannot be migrated as it is (no kubelet, runtime missing, version unknown); nothing changed
  6  not available in this release; nothing was changed"
    };
}
const EXIT_CODES: &str = exit_codes!();
macro_rules! migrate_examples {
    () => {
        "Example:\n  cri-migrate migrate --to containerd --dry-run\n  cri-migrate migrate --to containerd --dry-run --root examples/nodes/kubeadm-1.23-docker"
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "cri-migrate",
    version,
    about = "Move a Kubernetes node off Docker Engine (dockershim) onto containerd or CRI-O",
    long_about = "Move a Kubernetes node off Docker Engine (dockershim) onto containerd or CRI-O, keeping its \
settings: cgroup driver, pause image, CNI directories, registry mirrors, insecure registries and \
certificates. Inspect the node, show the plan as a diff, then apply it.",
    after_long_help = EXIT_CODES
)]
pub struct Cli {
    /// Treat DIR as the node's root file system: every node path is read under it. Use it to
    /// check a mounted node image, or a copy of a node's /etc and /var/lib/kubelet.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Report the node's kubelet, runtimes, Docker settings, CNI and the risks of moving it.
    #[command(
        after_help = "Example:\n  cri-migrate inspect\n  cri-migrate inspect --root /mnt/node-image --output json"
    )]
    Inspect {
        /// text for people, json for scripts (docs/json.md).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        /// The kubelet's version, when the node cannot tell (no binary or package to read).
        #[arg(long, value_name = "V", value_parser = parse_version)]
        kubelet_version: Option<Version>,
    },
    /// Plan the move to containerd or CRI-O and show it: every file as a unified diff, then
    /// the service actions, then the warnings.
    #[command(
        after_help = migrate_examples!(),
        after_long_help = concat!(migrate_examples!(), "\n\n", exit_codes!())
    )]
    Migrate(MigrateArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  cri-migrate completions bash > /etc/bash_completion.d/cri-migrate"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The runtime to move to.
    #[arg(long, value_enum)]
    pub to: Target,
    /// Show what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// text for people, json for scripts (docs/json.md).
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// The kubelet's version, when the node cannot tell (no binary or package to read).
    #[arg(long, value_name = "V", value_parser = parse_version)]
    pub kubelet_version: Option<Version>,
    /// The target runtime's version, when it cannot be read, or to plan for a node where it
    /// will be installed.
    #[arg(long, value_name = "V", value_parser = parse_version)]
    pub runtime_version: Option<Version>,
    /// The pause image the runtime must use (default: the kubelet's --pod-infra-container-image,
    /// else what the runtime's config already sets, else the runtime's default).
    #[arg(long, value_name = "IMAGE")]
    pub sandbox_image: Option<String>,
}

fn parse_version(s: &str) -> Result<Version, String> {
    Version::parse(s).ok_or_else(|| format!("`{s}` is not a version (expected e.g. 1.23.17)"))
}
