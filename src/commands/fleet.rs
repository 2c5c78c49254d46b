//! `cri-migrate fleet FILE...`: many nodes' JSON reports, one table. It reads what the fleet's
//! engine collected — each node's dry run (`migrate --dry-run --output json`) before a rollout,
//! its `status --output json` after — named after the node (`NODE.json`, in any directory; the
//! Ansible role writes `plan/NODE.json` and `status/NODE.json`). It runs nothing on any node.

use crate::cli::{FleetArgs, Output};
use crate::error::{exit, Failure};
use anyhow::Result;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::Write;

#[derive(Debug, Default, Serialize)]
pub struct Row {
    pub node: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub risks: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

fn node_name(path: &std::path::Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn run(args: &FleetArgs, out: &mut dyn Write) -> Result<i32> {
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for path in &args.files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Failure::bad_input(
                path.display().to_string(),
                e,
                "Name the JSON files the nodes' reports were saved to.",
            )
        })?;
        let doc: Value = serde_json::from_str(&text).map_err(|e| {
            Failure::bad_input(
                path.display().to_string(),
                format!("not a JSON report ({e})"),
                "Give it the output of `cri-migrate migrate --dry-run --output json` or `cri-migrate status --output json`.",
            )
        })?;
        let name = node_name(path);
        let row = rows.entry(name.clone()).or_insert_with(|| Row {
            node: name,
            ..Row::default()
        });
        match doc["command"].as_str() {
            Some("migrate") if doc["dry_run"] == true => {
                row.runtime = doc["from"].as_str().map(str::to_string);
                row.target = doc["target"].as_str().map(str::to_string);
                row.risks = doc["warnings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|w| w["severity"] == "warning")
                    .filter_map(|w| w["code"].as_str().map(str::to_string))
                    .collect();
                row.images = doc["images"]["carried"].as_str().map(str::to_string);
            }
            Some("migrate") | Some("status") => {
                let state = doc["state"]
                    .as_str()
                    .or_else(|| doc["result"].as_str())
                    .unwrap_or("unknown");
                row.status = Some(state.to_string());
                if row.target.is_none() {
                    row.target = doc["target"].as_str().map(str::to_string);
                }
            }
            _ => {
                return Err(Failure::bad_input(
                    path.display().to_string(),
                    format!("a `{}` report, not a dry run or a status", doc["command"].as_str().unwrap_or("?")),
                    "Give it the output of `cri-migrate migrate --dry-run --output json` or `cri-migrate status --output json`.",
                )
                .into())
            }
        }
    }
    let rows: Vec<Row> = rows.into_values().collect();
    match args.output {
        Output::Json => crate::error::write_envelope(
            out,
            "fleet",
            serde_json::json!({
                "nodes": rows,
            }),
        )?,
        Output::Text => table(out, &rows)?,
    }
    Ok(exit::OK)
}

/// The rows as a table for a person: a column a field, each cell escaped so that no control
/// character of a node's report reaches the terminal or forges a row.
fn table(out: &mut dyn Write, rows: &[Row]) -> Result<()> {
    let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    let table: Vec<[String; 6]> = rows
        .iter()
        .map(|r| {
            [
                r.node.clone(),
                cell(&r.runtime),
                cell(&r.target),
                if r.risks.is_empty() {
                    "-".into()
                } else {
                    r.risks.join(",")
                },
                cell(&r.images),
                cell(&r.status),
            ]
            .map(|c| crate::report::printable(&c))
        })
        .collect();
    let head = ["NODE", "RUNTIME", "TARGET", "RISKS", "IMAGES", "STATUS"];
    let mut width = head.map(str::len);
    for r in &table {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    for r in std::iter::once(head.map(str::to_string)).chain(table) {
        let line: Vec<String> = r
            .iter()
            .zip(width)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}
