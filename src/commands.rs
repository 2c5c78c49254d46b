//! One function per verb: read the node, compute, print. Printing goes to the writer given, so
//! tests and the binary share the code.

use crate::cli::{Cli, Command, MigrateArgs, Output};
use crate::error::{exit, Failure};
use crate::inspect::{self, InspectOptions};
use crate::node::Node;
use crate::plan::{self, PlanOptions};
use crate::report;
use crate::system::{Commands, NoCommands, RealCommands};
use anyhow::Result;
use clap::CommandFactory;
use std::io::Write;

pub fn run(cli: Cli, out: &mut dyn Write) -> Result<i32> {
    let node = Node::new(&cli.root);
    if !node.root().is_dir() {
        return Err(Failure::preflight(
            format!("--root {} is not a directory", node.root().display()),
            "Point --root at a node's root file system.",
        )
        .into());
    }
    // Only the live node's programs may be run.
    let cmds: &dyn Commands = if node.is_live() {
        &RealCommands
    } else {
        &NoCommands
    };
    match cli.command {
        Command::Inspect {
            output,
            kubelet_version,
        } => {
            let facts = inspect::inspect(&node, cmds, &InspectOptions { kubelet_version })?;
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
        Command::Migrate(args) => migrate(&node, cmds, &args, out),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "cri-migrate", out);
            Ok(exit::OK)
        }
    }
}

fn migrate(
    node: &Node,
    cmds: &dyn Commands,
    args: &MigrateArgs,
    out: &mut dyn Write,
) -> Result<i32> {
    let facts = inspect::inspect(
        node,
        cmds,
        &InspectOptions {
            kubelet_version: args.kubelet_version,
        },
    )?;
    let opts = PlanOptions {
        target: args.to,
        runtime_version: args.runtime_version,
        sandbox_image: args.sandbox_image.clone(),
    };
    let plan = plan::plan(&facts, &opts)?;
    match args.output {
        Output::Text => write!(
            out,
            "{}",
            report::plan_text(&plan, console::colors_enabled())
        )?,
        Output::Json => writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&report::plan_json(&plan, &facts, args.dry_run))?
        )?,
    }
    if args.dry_run {
        return Ok(exit::OK);
    }
    Err(Failure::NotImplemented(
        "this release plans and shows the migration but does not apply it yet; nothing was changed. Applying comes with the next release; until then use --dry-run".into(),
    )
    .into())
}
