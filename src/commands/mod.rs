//! One module per verb. Each reads the node, computes, prints to the writer it is given, and
//! returns the exit code; the process environment (terminals) comes in as [`Console`].

mod detach;
mod fleet;
mod images;
mod migrate;
mod rollback;
mod status;
mod verify;

use crate::cli::{Cli, Command, Output};
use crate::cri::{self, Cri};
use crate::error::{exit, Failure};
use crate::inspect::{self, InspectOptions};
use crate::node::Node;
use crate::report;
use crate::system::kubectl::{Kubectl, RealKubectl};
use crate::system::systemd::RealSystemd;
use crate::system::{Commands, NoCommands, RealCommands};
use anyhow::Result;
use clap::CommandFactory;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

/// Whether the standard streams are terminals: decides between guided, unattended and refusing.
#[derive(Debug, Clone, Copy)]
pub struct Console {
    pub stdin_tty: bool,
    pub stderr_tty: bool,
    pub stdout_tty: bool,
}

impl Console {
    pub fn detect() -> Console {
        use std::io::IsTerminal;
        Console {
            stdin_tty: std::io::stdin().is_terminal(),
            stderr_tty: std::io::stderr().is_terminal(),
            stdout_tty: std::io::stdout().is_terminal(),
        }
    }
    pub fn interactive(&self) -> bool {
        self.stdin_tty && self.stderr_tty
    }
}

/// The node and how far we may touch it.
pub struct NodeAccess<'a> {
    pub node: &'a Node,
    /// Start and stop services, talk CRI: the node is this machine (or `--live`, a test hook).
    pub live: bool,
}

impl NodeAccess<'_> {
    pub fn commands(&self) -> &'static dyn Commands {
        if self.live {
            &RealCommands
        } else {
            &NoCommands
        }
    }

    pub fn systemd(&self) -> RealSystemd {
        RealSystemd::new(
            (!self.node.is_live() && !self.live).then(|| self.node.root().to_path_buf()),
        )
    }

    /// kubectl, on a live node only: under `--root` the node's kubeconfig is the image's, and
    /// kubectl runs what a kubeconfig's credential plugin names — nothing of the image may run.
    /// The kubeconfig is the operator's: `--kubeconfig`, else `$KUBECONFIG` (its first file
    /// that exists), else root's `~/.kube/config`, else the node's admin.conf (draining needs
    /// more than the kubelet's own rights), else kubelet.conf.
    pub fn kubectl(&self, flag: Option<&PathBuf>) -> Option<RealKubectl> {
        if !self.live {
            return None;
        }
        which::which("kubectl").ok()?;
        let (kubeconfig, source) = match flag {
            Some(p) => (p.clone(), "--kubeconfig".to_string()),
            None => kubeconfig_candidates(self.node)
                .into_iter()
                .find(|(p, _)| p.is_file())?,
        };
        Some(RealKubectl { kubeconfig, source })
    }
}

/// The kubeconfigs a live run may use, in order, each with where it comes from.
fn kubeconfig_candidates(node: &Node) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = std::env::var_os("KUBECONFIG")
        .map(|v| {
            std::env::split_paths(&v)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| (p, "$KUBECONFIG".to_string()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("HOME") {
        out.push((
            PathBuf::from(home).join(".kube/config"),
            "~/.kube/config".to_string(),
        ));
    }
    for c in ["/etc/kubernetes/admin.conf", "/etc/kubernetes/kubelet.conf"] {
        out.push((node.path(c), c.to_string()));
    }
    out
}

pub fn connect_cri(endpoint: &str, timeout: Duration) -> Result<Box<dyn Cri>> {
    Ok(Box::new(cri::wait_ready(endpoint, timeout)?))
}

pub fn run(cli: Cli, console: Console, out: &mut dyn Write) -> Result<i32> {
    let node = Node::new(&cli.root);
    if !node.root().is_dir() {
        return Err(Failure::preflight(
            format!("--root {} is not a directory", node.root().display()),
            "Point --root at a node's root file system.",
        )
        .into());
    }
    let t = NodeAccess {
        node: &node,
        live: node.is_live() || cli.live,
    };
    // The commands that change the node decide what a signal does (src/signals.rs).
    let changes = match &cli.command {
        Command::Migrate(a) => (!a.dry_run).then_some(("migrate", a.output)),
        Command::Rollback(a) => Some(("rollback", a.output)),
        Command::Images(a) => Some(("images", a.output)),
        _ => None,
    };
    if let Some((command, output)) = changes {
        crate::signals::install()?;
        let root = node.root().to_path_buf();
        crate::signals::set_log_opener(Box::new(move || {
            let node = Node::new(&root);
            let dir = crate::records::RecordDir::open(&node, crate::records::HOME, true).ok()??;
            let f = dir.append("output.log").ok()?;
            Some((f, format!("{}/output.log", crate::records::HOME)))
        }));
        if output == Output::Json {
            crate::signals::set_json(command);
        }
    }
    match cli.command {
        Command::Inspect {
            output,
            kubelet_version,
        } => {
            let facts = inspect::inspect(
                &node,
                t.commands(),
                &InspectOptions {
                    kubelet_version,
                    talk: t.live,
                },
            )?;
            match output {
                Output::Text => write!(out, "{}", report::inspect_text(&facts))?,
                Output::Json => writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&report::inspect_json(&facts))?
                )?,
            }
            Ok(exit::OK)
        }
        Command::Migrate(args) => migrate::run(&t, &args, console, out),
        Command::Verify(args) => verify::run(&t, &args, out),
        Command::Rollback(args) => rollback::run(&t, &args, console, out),
        Command::Images(args) => images::run(&t, &args, console, out),
        Command::Status(args) => status::run(&t, &args, out),
        Command::Fleet(args) => fleet::run(&args, out),
        Command::Manpages { dir } => {
            let cmd = Cli::command();
            std::fs::create_dir_all(&dir)?;
            let mut pages = vec![("cri-migrate".to_string(), cmd.clone())];
            for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
                let name = format!("cri-migrate-{}", sub.get_name());
                let leaked: &'static str = Box::leak(name.clone().into_boxed_str());
                pages.push((name, sub.clone().name(leaked)));
            }
            for (name, page) in pages {
                let mut buf = Vec::new();
                clap_mangen::Man::new(page).render(&mut buf)?;
                std::fs::write(dir.join(format!("{name}.1")), buf)?;
            }
            writeln!(out, "man pages written to {}", dir.display())?;
            Ok(exit::OK)
        }
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "cri-migrate", out);
            Ok(exit::OK)
        }
    }
}

/// Print a failure that comes after a report (the report already went to stdout), and return
/// its exit code.
pub fn report_failure(f: &Failure) -> i32 {
    eprintln!(
        "{}",
        crate::secrets::shown(&format!(
            "{} {}",
            console::style("error:").red().bold().for_stderr(),
            crate::report::printable(&crate::secrets::redact(&f.to_string()))
        ))
    );
    f.exit_code()
}

pub fn kubectl_ref(k: &Option<RealKubectl>) -> Option<&dyn Kubectl> {
    k.as_ref().map(|k| k as &dyn Kubectl)
}
