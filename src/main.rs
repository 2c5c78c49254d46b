//! The cri-migrate command: parse, dispatch, print the error paragraph, exit with its code.
use clap::Parser;
use cri_migrate::{cli, commands, error, report};
use error::{exit_code_of, Failure};
use std::io::Write;

/// Whether the command line asks for JSON, read without clap (which refused it).
fn wants_json(args: &[String]) -> bool {
    args.windows(2)
        .any(|w| w[0] == "--output" && w[1] == "json")
        || args.iter().any(|a| a == "--output=json")
}

fn main() {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            let args: Vec<String> = std::env::args().collect();
            if !matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) && wants_json(&args)
            {
                // With --output json every outcome is one JSON document on stdout, a usage error
                // too; the message also goes to stderr as clap writes it.
                // The subcommand named, as clap knows them all (one list: the CLI's own).
                let names: Vec<String> = <cli::Cli as clap::CommandFactory>::command()
                    .get_subcommands()
                    .map(|c| c.get_name().to_string())
                    .collect();
                let command = args
                    .iter()
                    .skip(1)
                    .find(|a| names.contains(a))
                    .map(String::as_str)
                    .unwrap_or("cri-migrate");
                let message = e.kind().as_str().map(str::to_string).unwrap_or_default();
                let detail = e.to_string();
                let first = detail
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or(&message)
                    .trim_start_matches("error: ")
                    .to_string();
                println!(
                    "{}",
                    report::error_json(command, "usage", &first, error::exit::USAGE)
                );
                let _ = e.print();
                std::process::exit(error::exit::USAGE);
            }
            e.exit()
        }
    };
    let json = cli.command.output() == Some(cli::Output::Json);
    let command = cli.command.name();
    let stdout = std::io::stdout();
    // Every byte of stdout goes through the redaction of credentials (src/secrets.rs).
    // Text is escaped on its way out too (report::for_terminal): one printing path for all.
    let mut out = if json {
        cri_migrate::secrets::Redacting::new(stdout.lock())
    } else {
        cri_migrate::secrets::Redacting::escaping(stdout.lock())
    };
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
            // On the terminal, a message that quotes the node's files is escaped (no control
            // character of theirs reaches it); the JSON above carries it as JSON.
            let shown = report::printable(&message);
            match failure {
                Some(Failure::NothingToDo(_)) => {
                    if !json {
                        let _ = writeln!(out, "{shown}");
                    }
                }
                _ => eprintln!(
                    "{} {shown}",
                    console::style("error:").red().bold().for_stderr()
                ),
            }
            code
        }
    };
    let _ = out.flush();
    std::process::exit(code);
}
