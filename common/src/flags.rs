//! Parsers for the binaries' command lines that clap does not have.

/// A positive number of hours, at most a year (what `Duration::from_secs_f64` can take and
/// an operator can mean).
pub fn parse_hours(v: &str) -> Result<f64, String> {
    match v.trim().parse::<f64>() {
        Ok(h) if h > 0.0 && h <= 8_784.0 => Ok(h),
        _ => Err(format!(
            "`{v}` is not a number of hours above 0 and at most 8784"
        )),
    }
}

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
