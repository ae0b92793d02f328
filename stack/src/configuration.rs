//! `docs/configuration.md`, generated from the binaries' own `--help`: every command a
//! deployment runs, its flags with their variables and defaults as clap prints them, and an
//! index of every variable and the commands that read it. A test compares the committed file
//! with what the binaries print, so the document cannot drift from the code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::StackError;
use crate::launch::env_names;

/// The commands documented, in the order a reader meets them.
pub const COMMANDS: &[&[&str]] = &[
    &["iot-demo"],
    &["meter"],
    &["simulator", "sink"],
    &["simulator", "live"],
    &["simulator", "fleet"],
    &["analytics", "serve"],
    &["analytics", "run"],
    &["analytics", "sql"],
    &["analytics", "export"],
    &["analytics", "scheduler"],
    &["analytics", "executor"],
    &["web"],
    &["migrate"],
];

/// How to write the file again; the test's failure says it.
pub const REGENERATE: &str = "cargo build --workspace --bins && \
     target/debug/config-doc --bin-dir target/debug > docs/configuration.md";

/// One command's `--help`, with an empty environment so that no variable set here shows up
/// as a value.
fn help(bin_dir: &Path, command: &[&str]) -> Result<String, StackError> {
    let bin = bin_dir.join(command[0]);
    let out = Command::new(&bin)
        .args(&command[1..])
        .arg("--help")
        .env_clear()
        .output()
        .map_err(|e| {
            StackError::Setup(format!("{}: {e} (build the binaries first)", bin.display()))
        })?;
    if !out.status.success() {
        return Err(StackError::Setup(format!(
            "`{} --help` failed: {}",
            command.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_owned())
}

/// The document, from the binaries in `bin_dir`.
pub fn document(bin_dir: &Path) -> Result<String, StackError> {
    let mut helps = Vec::new();
    let mut readers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for command in COMMANDS {
        let text = help(bin_dir, command)?;
        let name = command.join(" ");
        for var in env_names(&text) {
            let commands = readers.entry(var).or_default();
            if !commands.contains(&name) {
                commands.push(name.clone());
            }
        }
        helps.push((name, text));
    }
    let mut doc = String::from(
        "# Configuration\n\n\
         <!-- Generated from the binaries' own `--help` by `config-doc`; do not edit. -->\n\n\
         Every setting is a flag and an environment variable (the variable is what the compose\n\
         file and the Kubernetes manifests set). Logs go to stderr, filtered by `RUST_LOG`\n\
         (default `info`). To write this file again:\n\n",
    );
    let _ = writeln!(doc, "    {REGENERATE}\n");
    doc.push_str("## Every variable\n\n| variable | read by |\n|---|---|\n");
    for (var, commands) in &readers {
        let by: Vec<String> = commands.iter().map(|c| format!("`{c}`")).collect();
        let _ = writeln!(doc, "| `{var}` | {} |", by.join(", "));
    }
    for (name, text) in helps {
        let _ = write!(doc, "\n## `{name}`\n\n```text\n{text}\n```\n");
    }
    Ok(doc)
}
