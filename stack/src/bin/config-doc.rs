//! `config-doc`: prints `docs/configuration.md` from the built binaries' `--help`.

use std::path::PathBuf;

use clap::Parser;

/// Print docs/configuration.md, generated from the binaries' own --help.
#[derive(Parser)]
struct Cli {
    /// Where the built binaries are (target/debug or target/release).
    #[arg(long, default_value = "target/debug")]
    bin_dir: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    print!("{}", iot_stack::configuration::document(&cli.bin_dir)?);
    Ok(())
}
