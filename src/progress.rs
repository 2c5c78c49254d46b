//! How steps are shown while they run: a spinner line per step on a terminal (indicatif), one
//! log line per step otherwise, nothing for JSON.

use crate::apply::{Progress, StepReport, StepStatus};
use console::style;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;

#[derive(Default)]
pub struct Bars {
    current: Option<ProgressBar>,
}

impl Progress for Bars {
    fn begin(&mut self, step: &str) {
        let pb = ProgressBar::new_spinner();
        pb.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").unwrap());
        pb.set_message(crate::secrets::shown(step));
        pb.enable_steady_tick(Duration::from_millis(120));
        self.current = Some(pb);
    }

    fn end(&mut self, r: &StepReport) {
        let line = line(r);
        match self.current.take() {
            Some(pb) => pb.finish_with_message(crate::secrets::shown(&line)),
            None => eprintln!("{}", crate::secrets::shown(&line)),
        }
    }
}

/// One line a step, on stderr.
pub struct Lines;

impl Progress for Lines {
    fn begin(&mut self, _: &str) {}
    fn end(&mut self, r: &StepReport) {
        eprintln!("{}", crate::secrets::shown(&line(r)));
    }
}

fn line(r: &StepReport) -> String {
    crate::secrets::redact(&line_raw(r))
}

fn line_raw(r: &StepReport) -> String {
    let mark = match r.status {
        StepStatus::Done => style("ok  ").green().to_string(),
        StepStatus::Skipped => style("skip").dim().to_string(),
        StepStatus::Failed => style("FAIL").red().bold().to_string(),
    };
    let detail = r
        .detail
        .as_deref()
        .map(|d| format!(": {}", d.lines().next().unwrap_or("")))
        .unwrap_or_default();
    format!("[{mark}] {} ({} ms){detail}", r.step, r.duration_ms)
}
