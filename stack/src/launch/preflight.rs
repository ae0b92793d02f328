//! The pre-flight: before anything starts, each service's command must name a binary the
//! image carries and one of its subcommands, and every variable the file gives it must be one
//! that binary reads (its clap `--help` lists them), so a misspelt setting fails here, not
//! silently in production.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use crate::StackError;
use crate::compose::Service;

/// Variables every binary reads outside its flags.
const READ_BY_EVERY_BINARY: &[&str] = &["RUST_LOG"];

/// The runtime image's `ENV` (the last stage of the Dockerfile).
pub fn image_env(dockerfile: &str) -> BTreeMap<String, String> {
    let last_stage = dockerfile.rsplit("\nFROM ").next().unwrap_or("");
    last_stage
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .flat_map(|l| l.split_whitespace())
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// The binaries the Dockerfile copies into the image.
pub fn image_binaries(dockerfile: &str) -> BTreeSet<String> {
    dockerfile
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("target/release/"))
        .filter(|w| !w.is_empty() && !w.contains('/') && !w.contains('*'))
        .map(str::to_owned)
        .collect()
}

/// The command names a binary of the image and one of its subcommands, and every variable
/// the file gives the service is one that binary reads (its `--help` lists them).
pub(super) fn check_command(
    s: &Service,
    bin_dir: &Path,
    binaries: &BTreeSet<String>,
) -> Result<(), StackError> {
    let Some(program) = s.command.first() else {
        return Err(StackError::service(&s.name, "has no command"));
    };
    if !binaries.contains(program) {
        return Err(StackError::service(
            &s.name,
            format!("command `{program}` is not a binary of the image ({binaries:?})"),
        ));
    }
    let bin = bin_dir.join(program);
    if !bin.is_file() {
        return Err(StackError::Setup(format!(
            "{} is not built: cargo build --workspace --bins (or cargo test --workspace) first",
            bin.display()
        )));
    }
    let subcommands: Vec<&String> = s.command[1..]
        .iter()
        .take_while(|a| !a.starts_with('-'))
        .collect();
    // Flags may sit on the binary or on any subcommand on the way: read every level's help.
    let mut read: BTreeSet<String> = READ_BY_EVERY_BINARY
        .iter()
        .map(|v| (*v).to_owned())
        .collect();
    for depth in 0..=subcommands.len() {
        let out = Command::new(&bin)
            .args(&subcommands[..depth])
            .arg("--help")
            .env_clear()
            .output()
            .map_err(|e| StackError::service(&s.name, format!("cannot run {program}: {e}")))?;
        if !out.status.success() {
            return Err(StackError::service(
                &s.name,
                format!(
                    "command {:?} is not a command of `{program}`: {}",
                    s.command,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        read.extend(env_names(&String::from_utf8_lossy(&out.stdout)));
    }
    let unread: Vec<&String> = s
        .environment
        .keys()
        .filter(|k| !read.contains(k.as_str()))
        .collect();
    if !unread.is_empty() {
        return Err(StackError::service(
            &s.name,
            format!(
                "{unread:?} {} read by no flag of `{}`",
                if unread.len() == 1 { "is" } else { "are" },
                s.command.join(" ")
            ),
        ));
    }
    Ok(())
}

/// The variables a clap `--help` text lists (`[env: NAME=...]`).
pub(crate) fn env_names(help: &str) -> Vec<String> {
    // clap wraps long lines; one space between words keeps `[env: NAME` whole.
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_texts_name_their_variables() {
        let help = "  --a <A>  x [env:\n   IOT_A=] [default: 1]\n  --s <S> [env: IOT_SECRET]";
        assert_eq!(env_names(help), ["IOT_A", "IOT_SECRET"]);
    }
}
