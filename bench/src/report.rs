//! One scenario's results: a JSON file for tools and a markdown table for
//! people, both stamped with the machine, the date and the command.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::procfs::{self, Machine};
use crate::workspace::ModuleStats;

/// The results of one scenario run.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub scenario: String,
    pub command: String,
    pub machine: Machine,
    pub load_average_end: f64,
    pub workspace: Option<ModuleStats>,
    /// Scenario-specific figures.
    pub results: serde_json::Value,
    /// Things a reader of the numbers must know (skipped variants, bounds hit).
    pub notes: Vec<String>,
    #[serde(skip)]
    pub markdown: String,
}

impl Report {
    /// Writes `<scenario>-<date>.json` and `.md` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let stamp = self.machine.date.replace(':', "");
        let json = dir.join(format!("{}-{stamp}.json", self.scenario));
        let markdown = dir.join(format!("{}-{stamp}.md", self.scenario));
        std::fs::write(&json, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("failed to write {}", json.display()))?;
        std::fs::write(&markdown, &self.markdown)
            .with_context(|| format!("failed to write {}", markdown.display()))?;
        Ok((json, markdown))
    }

    /// Finishes a report: records the closing load average and renders the
    /// header above `body`.
    pub fn finish(
        scenario: &str,
        options: &crate::Options,
        machine: Machine,
        workspace: Option<ModuleStats>,
        results: serde_json::Value,
        notes: Vec<String>,
        body: String,
    ) -> Report {
        let load_average_end = procfs::load_average();
        let mut markdown = format!("### {scenario}\n\n");
        markdown.push_str(&format!(
            "`{}` on {} ({} CPUs, {:.0} GiB, Linux {}), {}, {}; load average {:.2} at start, {:.2} at end.\n",
            options.command,
            machine.date,
            machine.cpus,
            machine.memory_gib,
            machine.kernel,
            machine.gopls_version,
            machine.go_version,
            machine.load_average_start,
            load_average_end
        ));
        if let Some(ws) = &workspace {
            markdown.push_str(&format!(
                "Workspace `{}` (seed {}): {} packages, {} Go files, {} lines.\n",
                ws.size, ws.seed, ws.packages, ws.go_files, ws.lines
            ));
        }
        markdown.push('\n');
        markdown.push_str(&body);
        for note in &notes {
            markdown.push_str(&format!("\n- {note}"));
        }
        markdown.push('\n');
        Report {
            scenario: scenario.to_owned(),
            command: options.command.clone(),
            machine,
            load_average_end,
            workspace,
            results,
            notes,
            markdown,
        }
    }
}

/// Renders a markdown table.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = format!("| {} |\n", headers.join(" | "));
    out.push_str(&format!("|{}\n", "---|".repeat(headers.len())));
    for row in rows {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
    }
    out
}

/// Formats a number with `digits` decimals, or "n/a" for NaN.
pub fn num(value: f64, digits: usize) -> String {
    if value.is_finite() {
        format!("{value:.digits$}")
    } else {
        "n/a".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_header_rule_and_rows() {
        let text = table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(text, "| a | b |\n|---|---|\n| 1 | 2 |\n");
    }

    #[test]
    fn nan_prints_as_not_available() {
        assert_eq!(num(f64::NAN, 2), "n/a");
        assert_eq!(num(1.234, 2), "1.23");
    }
}
