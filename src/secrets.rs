//! Secrets the all-in-one process needs: taken from the environment when given, otherwise
//! generated once and kept in the data directory (mode 0600) so tokens survive restarts.

use std::io::Write;
use std::path::Path;

pub fn load_or_create(given: Option<&str>, dir: &Path, name: &str) -> std::io::Result<String> {
    if let Some(s) = given.filter(|s| !s.is_empty()) {
        return Ok(s.to_owned());
    }
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => return Ok(s.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    std::fs::create_dir_all(dir)?;
    let secret = iot_common::auth::random_secret();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_and_overridable() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let a = load_or_create(None, dir.path(), "s")?;
        let b = load_or_create(None, dir.path(), "s")?;
        assert_eq!(a, b);
        assert!(a.len() >= 40);
        assert_eq!(load_or_create(Some("given"), dir.path(), "s")?, "given");
        Ok(())
    }
}
