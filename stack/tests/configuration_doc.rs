//! `docs/configuration.md` is what the binaries' own `--help` says today.

use std::path::{Path, PathBuf};

use iot_stack::configuration::{REGENERATE, document};

/// `target/debug` (or release): this test binary lives in its `deps/`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("no target dir above {}", exe.display()))
}

#[test]
fn the_configuration_document_is_generated_from_the_binaries() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/configuration.md"
    ))
    .unwrap_or_else(|e| panic!("docs/configuration.md: {e}"));
    let generated = document(&bin_dir()).unwrap_or_else(|e| panic!("{e}"));
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| committed.lines().count().min(generated.lines().count()));
        panic!(
            "docs/configuration.md is out of date (first difference at line {}: {:?} in the \
             file, {:?} from the binaries); write it again with\n  {REGENERATE}",
            first + 1,
            committed.lines().nth(first).unwrap_or("(end)"),
            generated.lines().nth(first).unwrap_or("(end)"),
        );
    }
    for var in ["IOT_METER_SECRET", "IOT_ANALYST_TOKEN", "IOT_KAFKA_BROKERS"] {
        assert!(
            generated.contains(&format!("| `{var}` |")),
            "{var} is indexed"
        );
    }
}
