//! Parsers for the binaries' command lines that clap does not have.

/// `1`, `true`, `yes`, `on` (and their opposites), as operators write them in env files.
pub fn parse_flag(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        other => Err(format!(
            "`{other}` is not 1/0, true/false, yes/no or on/off"
        )),
    }
}
