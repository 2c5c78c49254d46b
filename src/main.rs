//! The cri-migrate command: parse, dispatch, print the error paragraph, exit with its code.
use clap::Parser;
use cri_migrate::{cli, commands, error, report};
use error::{exit_code_of, Failure};
use std::io::Write;

fn main() {
    let cli = cli::Cli::parse();
    let json = match &cli.command {
        cli::Command::Inspect { output, .. } => *output == cli::Output::Json,
        cli::Command::Migrate(a) => a.output == cli::Output::Json,
        cli::Command::Verify(a) => a.output == cli::Output::Json,
        cli::Command::Rollback(a) => a.output == cli::Output::Json,
        cli::Command::Images(a) => a.output == cli::Output::Json,
        cli::Command::Completions { .. } => false,
    };
    let command = match &cli.command {
        cli::Command::Inspect { .. } => "inspect",
        cli::Command::Migrate(_) => "migrate",
        cli::Command::Verify(_) => "verify",
        cli::Command::Rollback(_) => "rollback",
        cli::Command::Images(_) => "images",
        cli::Command::Completions { .. } => "completions",
    };
    let stdout = std::io::stdout();
    // Every byte of stdout goes through the redaction of credentials (src/secrets.rs).
    let mut out = cri_migrate::secrets::Redacting::new(stdout.lock());
    let code = match commands::run(cli, commands::Console::detect(), &mut out) {
        Ok(code) => code,
        Err(err) => {
            let code = exit_code_of(&err);
            let failure = err.chain().find_map(|e| e.downcast_ref::<Failure>());
            let message = cri_migrate::secrets::redact(&match failure {
                Some(f) => f.to_string(),
                None => format!("{err:#}"),
            });
            if json {
                let kind = failure.map(Failure::kind).unwrap_or("error");
                let _ = writeln!(out, "{}", report::error_json(command, kind, &message, code));
            }
            match failure {
                Some(Failure::NothingToDo(_)) => {
                    if !json {
                        let _ = writeln!(out, "{message}");
                    }
                }
                _ => eprintln!(
                    "{} {message}",
                    console::style("error:").red().bold().for_stderr()
                ),
            }
            code
        }
    };
    let _ = out.flush();
    std::process::exit(code);
}
