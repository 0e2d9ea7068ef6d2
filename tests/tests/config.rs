//! Each service's own binary reads its configuration as `herald <service>`
//! does: `--print-config` shows its sections, secrets masked.
//!
//! Needs the binaries: `cargo build --workspace --bins`.

use std::process::Command;

#[test]
fn every_service_binary_prints_its_settings_with_secrets_masked() {
    for (binary, sections) in [
        ("herald-authsvc", &["[authsvc]", "[limits]"][..]),
        (
            "herald-collector",
            &["[collector]", "[infra]", "[limits]"][..],
        ),
        ("herald-dispatcher", &["[dispatcher]", "[infra]"][..]),
        ("herald-pusher", &["[pusher]", "[infra]", "[limits]"][..]),
    ] {
        let out = Command::new(herald_tests::program(binary))
            .arg("--print-config")
            .env_clear()
            .env("HERALD_API_KEY", "the-real-key")
            .env("HERALD_NAMESPACE", "printed-ns")
            .output()
            .unwrap_or_else(|e| panic!("{binary} (cargo build --workspace --bins): {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{binary}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for section in sections {
            assert!(
                stdout.contains(section),
                "{binary} lacks {section}:\n{stdout}"
            );
        }
        assert!(
            !stdout.contains("the-real-key"),
            "{binary} leaks the key:\n{stdout}"
        );
        if binary == "herald-authsvc" || binary == "herald-collector" {
            assert!(
                stdout.contains("api_key = \"********\""),
                "{binary}:\n{stdout}"
            );
        }
        if sections.contains(&"[infra]") {
            assert!(
                stdout.contains("namespace = \"printed-ns\""),
                "{binary}:\n{stdout}"
            );
        }
    }
}
