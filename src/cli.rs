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
  2  usage error (bad options; no terminal and no --yes)
  3  nothing to do: the node already runs on the target runtime as cri-migrate would set it up
  4  a file on the node could not be understood; nothing was changed
  5  preflight failed: the node cannot be migrated as it is; nothing was changed
  7  the migration failed and the node was rolled back to what it was
  8  the migration failed and the rollback did not complete: a person must look (the message
     names the backup to restore from)
  9  cancelled at a prompt; nothing was changed
 10  verify: the runtime did not pass the check
 11  images: some image could not be carried over (the others were)"
    };
}
macro_rules! migrate_examples {
    () => {
        "Examples:
  cri-migrate migrate --to containerd --dry-run
  cri-migrate migrate --to containerd --dry-run --root examples/nodes/kubeadm-1.23-docker
  sudo cri-migrate migrate                     # guided: asks, shows the diff, confirms
  sudo cri-migrate migrate --to containerd --yes --output json    # unattended"
    };
}

#[derive(Debug, Parser)]
#[command(
    name = "cri-migrate",
    version,
    about = "Move a Kubernetes node off Docker Engine (dockershim) onto containerd or CRI-O",
    long_about = "Move a Kubernetes node off Docker Engine (dockershim) onto containerd or CRI-O, keeping its \
settings: cgroup driver, pause image, CNI directories, registry mirrors, insecure registries and \
certificates. Inspect the node, show the plan as a diff, apply it with backups, verify it through CRI, \
and roll back on failure.",
    after_long_help = exit_codes!()
)]
pub struct Cli {
    /// Treat DIR as the node's root file system: every node path is read (and written) under it.
    /// Use it for a mounted node image: files are written and units enabled or disabled with
    /// `systemctl --root`, but nothing is started or stopped.
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Treat --root as the running system: start and stop services and talk CRI (a test hook).
    #[arg(long, global = true, hide = true)]
    pub live: bool,

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
        after_help = "Examples:\n  cri-migrate inspect\n  cri-migrate inspect --root /mnt/node-image --output json"
    )]
    Inspect {
        /// text for people, json for scripts (docs/json.md).
        #[arg(long, value_enum, default_value_t)]
        output: Output,
        /// The kubelet's version, when the node cannot tell (no binary or package to read).
        #[arg(long, value_name = "V", value_parser = parse_version)]
        kubelet_version: Option<Version>,
    },
    /// Plan the move to containerd or CRI-O, show it (every file as a diff, the service actions,
    /// the warnings), then apply it: backups, atomic writes, systemd, a pull through CRI, and a
    /// rollback if anything fails.
    #[command(after_help = migrate_examples!(), after_long_help = concat!(migrate_examples!(), "\n\n", exit_codes!()))]
    Migrate(MigrateArgs),
    /// Talk CRI to the runtime as the kubelet does: Version, Status, and a test pull with the
    /// kubelet's registry credentials.
    Verify(VerifyArgs),
    /// Put the node back as it was before a migration: every file byte for byte, the units'
    /// enabled and active states. Running it twice is harmless.
    Rollback(RollbackArgs),
    /// Carry Docker's images over to the runtime (what `migrate` does before the cutover), alone.
    Images(ImagesArgs),
    /// The state of the last or current migration on this node, from its journal: none, in
    /// progress (step, since, pid), interrupted, migrated, rolled back (why), or needs a person
    /// (what to restore). Read-only; it answers while a migration runs.
    Status(StatusArgs),
    /// One table for many nodes from their saved JSON reports (each file named after its node):
    /// dry runs before a rollout (runtime, target, risks, images carried), `status` after it.
    /// Runs nothing on any node.
    Fleet(FleetArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  cri-migrate completions bash > /etc/bash_completion.d/cri-migrate"
    )]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (cri-migrate.1 and one per command) into DIR: what the packages
    /// install (deploy/packages/build.sh).
    #[command(hide = true)]
    Manpages {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

impl Command {
    /// The subcommand's name, as typed (the test below holds it to clap's).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Inspect { .. } => "inspect",
            Command::Migrate(_) => "migrate",
            Command::Verify(_) => "verify",
            Command::Rollback(_) => "rollback",
            Command::Images(_) => "images",
            Command::Status(_) => "status",
            Command::Fleet(_) => "fleet",
            Command::Completions { .. } => "completions",
            Command::Manpages { .. } => "manpages",
        }
    }

    /// Its `--output`, where it has one.
    pub fn output(&self) -> Option<Output> {
        Some(match self {
            Command::Inspect { output, .. } => *output,
            Command::Migrate(a) => a.output,
            Command::Verify(a) => a.output,
            Command::Rollback(a) => a.output,
            Command::Images(a) => a.output,
            Command::Status(a) => a.output,
            Command::Fleet(a) => a.output,
            Command::Completions { .. } | Command::Manpages { .. } => return None,
        })
    }
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The runtime to move to (asked in the guided mode when not given).
    #[arg(long, value_enum)]
    pub to: Option<Target>,
    /// Show what would change and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Unattended: never prompt, never read stdin; every choice comes from a flag.
    #[arg(long, short = 'y')]
    pub yes: bool,
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
    #[arg(long, value_name = "IMAGE", value_parser = parse_image)]
    pub sandbox_image: Option<String>,
    /// The node's pod CIDR, for a kubelet on kubenet (default: the kubelet's --pod-cidr or
    /// podCIDR): kubenet has no CRI equivalent, so a CNI config for it is written.
    #[arg(long, value_name = "CIDR")]
    pub pod_cidr: Option<String>,
    /// The image to pull through CRI after the switch (default: the sandbox image).
    #[arg(long, value_name = "IMAGE", value_parser = parse_image)]
    pub test_image: Option<String>,
    /// Install the target runtime with the node's package manager when it is missing.
    #[arg(long)]
    pub install_runtime: bool,
    /// Cordon and drain the node first (kubectl), uncordon it at the end.
    #[arg(long)]
    pub drain: bool,
    /// The kubeconfig for --drain, the kubeadm CRI socket record and a kubenet node's pod CIDR
    /// (the Node object's, where no --pod-cidr says it) (default: $KUBECONFIG, else
    /// root's ~/.kube/config, else the node's /etc/kubernetes/admin.conf, else kubelet.conf; on a
    /// live node only: under --root nothing talks to the cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// The node's name in the API, for --drain and the kubeadm CRI socket record (default: the
    /// kubelet's --hostname-override, else the node's /etc/hostname). A DNS-1123 subdomain.
    #[arg(long, value_name = "NAME", value_parser = parse_node_name)]
    pub node_name: Option<String>,
    /// Leave a failed migration as it is instead of rolling it back.
    #[arg(long)]
    pub no_rollback: bool,
    /// Skip the test pod through CRI (RunPodSandbox, a container, removed): the runtime is then
    /// checked by Version, Status and a pull only. For nodes where no test pod may run.
    #[arg(long)]
    pub no_sandbox: bool,
    /// How long to wait for the runtime's CRI socket, and twice that for the kubelet (seconds,
    /// 1 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    /// Carry Docker's images over before the cutover: in-use (the node's containers', the pause
    /// image, the static pods'), all, or none.
    #[arg(long, value_enum, default_value_t)]
    pub images: crate::images::Selection,
    /// Copy Docker's images into containerd (stream its export) even where its overlay2 layers
    /// could be hard-linked into containerd's overlayfs snapshots (the default there: no second
    /// copy on disk, see docs/operations.md).
    #[arg(long)]
    pub copy_images: bool,
    /// Go ahead even when an in-use image could not be carried over.
    #[arg(long)]
    pub force: bool,
    /// Run the migration as a transient systemd unit on the host (`cri-migrate.service`) and
    /// return at once (exit 15, "in progress"); run the same command again to wait for it and
    /// get its result. From a privileged pod, give the host's root as --root (e.g. /host): the
    /// host's systemd is reached through its PID 1. Needs --yes.
    #[arg(long, requires = "yes")]
    pub detach: bool,
    /// With --detach under --root: the PID (in this PID namespace) of the host's systemd.
    #[arg(long, value_name = "PID", default_value_t = 1, hide = true)]
    pub host_pid: i32,
    /// Reach the runtime here for the checks (a test hook).
    #[arg(long, value_name = "URL", hide = true)]
    pub cri_endpoint: Option<String>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo cri-migrate images --to containerd\n  sudo cri-migrate images --to containerd --images all --output json"
)]
pub struct ImagesArgs {
    /// The runtime to carry the images to.
    #[arg(long, value_enum)]
    pub to: Target,
    /// Which images: in-use (the node's containers', the pause image, the static pods'), all.
    #[arg(long, value_enum, default_value_t)]
    pub images: crate::images::Selection,
    /// How many images to carry at once (1 to 32).
    #[arg(long, default_value_t = 2, value_parser = parse_parallel)]
    pub parallel: usize,
    /// Copy Docker's images into containerd (stream its export) even where its overlay2 layers
    /// could be hard-linked into containerd's overlayfs snapshots (the default there: no second
    /// copy on disk, see docs/operations.md).
    #[arg(long)]
    pub copy_images: bool,

    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cri-migrate verify\n  cri-migrate verify --endpoint unix:///run/containerd/containerd.sock --image registry.k8s.io/pause:3.9\n  cri-migrate verify --no-sandbox"
)]
pub struct VerifyArgs {
    /// The CRI endpoint (default: the kubelet's).
    #[arg(long, value_name = "URL")]
    pub endpoint: Option<String>,
    /// The image to pull (default: the node's pause image).
    #[arg(long, value_name = "IMAGE", value_parser = parse_image)]
    pub image: Option<String>,
    /// Seconds to wait for the runtime to answer (1 to 3600).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub timeout: u64,
    /// Skip the test pod (RunPodSandbox, a container in it, removed): only Version, Status and
    /// the pull.
    #[arg(long)]
    pub no_sandbox: bool,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  cri-migrate fleet reports/plan/*.json\n  cri-migrate fleet reports/plan/*.json reports/status/*.json --output json"
)]
pub struct FleetArgs {
    /// The nodes' JSON reports: `migrate --dry-run --output json` and `status --output json`,
    /// each saved as NODE.json.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  cri-migrate status
  cri-migrate status --output json

Exit codes: 0 migrated, 7 rolled back, 8 needs a person, 15 in progress or interrupted, 16 no migration.")]
pub struct StatusArgs {
    /// text for people, json for scripts (docs/json.md).
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sudo cri-migrate rollback\n  sudo cri-migrate rollback --backup /var/lib/cri-migrate/backups/20261126T101500.123Z --yes"
)]
pub struct RollbackArgs {
    /// The backup to restore (default: the latest, in /var/lib/cri-migrate/backups).
    #[arg(long, value_name = "DIR")]
    pub backup: Option<String>,
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// The longest wait a command line may ask for: an hour (more is a typo, and a wait that long
/// would overflow nothing, but hold a node half-migrated).
pub const MAX_TIMEOUT_SECS: u64 = 3600;

fn parse_parallel(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=32).contains(&n) => Ok(n),
        _ => Err(format!("`{s}` is not a number from 1 to 32")),
    }
}

fn parse_node_name(s: &str) -> Result<String, String> {
    crate::names::NodeName::parse(s)
        .map(|n| n.to_string())
        .map_err(|e| e.to_string())
}

fn parse_version(s: &str) -> Result<Version, String> {
    Version::parse(s).ok_or_else(|| format!("`{s}` is not a version (expected e.g. 1.23.17)"))
}

fn parse_image(s: &str) -> Result<String, String> {
    crate::names::image_reference(s).map(|()| s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// `Command::name` is clap's name of each subcommand, and every subcommand has one.
    #[test]
    fn every_subcommand_is_named_as_clap_names_it() {
        let clap_names: Vec<String> = <Cli as clap::CommandFactory>::command()
            .get_subcommands()
            .map(|c| c.get_name().to_string())
            .collect();
        let mut named = vec![];
        for name in &clap_names {
            let args: Vec<&str> = match name.as_str() {
                "migrate" => vec!["cri-migrate", "migrate", "--dry-run"],
                "completions" => vec!["cri-migrate", "completions", "bash"],
                "manpages" => vec!["cri-migrate", "manpages", "/tmp"],
                "fleet" => vec!["cri-migrate", "fleet", "/tmp"],
                "images" => vec!["cri-migrate", "images", "--to", "containerd"],
                n => vec!["cri-migrate", n],
            };
            match Cli::try_parse_from(&args) {
                Ok(cli) => {
                    assert_eq!(cli.command.name(), name);
                    named.push(name.clone());
                }
                Err(e) => panic!("{name}: {e}"),
            }
        }
        assert_eq!(named.len(), clap_names.len());
        assert!(clap_names.contains(&"fleet".to_string()));
    }

    #[test]
    fn an_image_option_that_is_no_image_reference_is_refused_where_it_is_given() {
        for opt in ["--sandbox-image", "--test-image"] {
            let args = ["cri-migrate", "migrate", "--dry-run", opt, "pause 3.9"];
            let e = Cli::try_parse_from(args).unwrap_err().to_string();
            assert!(e.contains("`pause 3.9` is not an image reference"), "{e}");
            let args = [
                "cri-migrate",
                "migrate",
                "--dry-run",
                opt,
                "registry.local:5000/pause:3.9",
            ];
            assert!(Cli::try_parse_from(args).is_ok());
        }
        let e = Cli::try_parse_from(["cri-migrate", "verify", "--image", "UP/x:y:z"]);
        assert!(e.is_err());
    }
}
