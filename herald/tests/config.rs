//! The built `herald` binary's configuration: the layers' precedence (file <
//! environment < flag), `--print-config` with secrets masked, for every
//! subcommand, and the refusals.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

const HERALD: &str = env!("CARGO_BIN_EXE_herald");

/// Runs `herald <args>` with exactly the environment `env` (nothing
/// inherited, so a developer's `HERALD_*` variables cannot leak in).
fn herald(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(HERALD)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("running herald")
}

/// The printed settings of a successful `--print-config`.
fn printed(args: &[&str], env: &[(&str, &str)]) -> toml::Table {
    let out = herald(args, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "herald {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .parse::<toml::Table>()
        .unwrap_or_else(|e| panic!("unparsable output {e}:\n{stdout}"))
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn path(f: &tempfile::NamedTempFile) -> &str {
    f.path().to_str().unwrap()
}

const FILE: &str = r#"
[infra]
namespace = "from-file"
partitions = 3
[limits]
max_payload_bytes = 1000
[collector]
outbox_grace_ms = 111
max_body_bytes = 5000
"#;

#[test]
fn a_flag_beats_the_environment_which_beats_the_file_which_beats_the_default() {
    let f = config_file(FILE);
    let env = [
        ("HERALD_NAMESPACE", "from-env"),
        ("HERALD_OUTBOX_GRACE_MS", "222"),
    ];
    let c = printed(
        &[
            "collector",
            "--config",
            path(&f),
            "--outbox-grace-ms",
            "333",
            "--print-config",
        ],
        &env,
    );
    assert_eq!(
        c["collector"]["outbox_grace_ms"].as_integer(),
        Some(333),
        "flag"
    );
    assert_eq!(c["infra"]["namespace"].as_str(), Some("from-env"), "env");
    assert_eq!(c["infra"]["partitions"].as_integer(), Some(3), "file");
    assert_eq!(
        c["collector"]["max_body_bytes"].as_integer(),
        Some(5000),
        "file"
    );
    assert_eq!(
        c["limits"]["max_payload_bytes"].as_integer(),
        Some(1000),
        "file"
    );
    assert_eq!(
        c["infra"]["kafka_timeout_ms"].as_integer(),
        Some(10000),
        "default"
    );
    assert_eq!(
        c["collector"]["addr"].as_str(),
        Some("127.0.0.1:7002"),
        "default"
    );

    // Without the flag the environment decides; without both, the file.
    let c = printed(&["collector", "--config", path(&f), "--print-config"], &env);
    assert_eq!(c["collector"]["outbox_grace_ms"].as_integer(), Some(222));
    let c = printed(&["collector", "--config", path(&f), "--print-config"], &[]);
    assert_eq!(c["collector"]["outbox_grace_ms"].as_integer(), Some(111));
    assert_eq!(c["infra"]["namespace"].as_str(), Some("from-file"));
}

#[test]
fn herald_config_names_the_file_and_booleans_can_be_turned_back_off() {
    let f = config_file("[collector]\nno_ingest = true\n");
    let c = printed(
        &["collector", "--print-config"],
        &[("HERALD_CONFIG", path(&f))],
    );
    assert_eq!(c["collector"]["no_ingest"].as_bool(), Some(true));
    let c = printed(
        &["collector", "--print-config"],
        &[("HERALD_CONFIG", path(&f)), ("HERALD_NO_INGEST", "false")],
    );
    assert_eq!(c["collector"]["no_ingest"].as_bool(), Some(false));
    let c = printed(
        &["collector", "--no-ingest=false", "--print-config"],
        &[("HERALD_CONFIG", path(&f))],
    );
    assert_eq!(c["collector"]["no_ingest"].as_bool(), Some(false));
    let c = printed(&["collector", "--no-ingest", "--print-config"], &[]);
    assert_eq!(c["collector"]["no_ingest"].as_bool(), Some(true));
}

#[test]
fn print_config_masks_secrets() {
    let f = config_file("[authsvc]\njwt_secret = \"file-secret-xyz\"\n");
    let out = herald(
        &["authsvc", "--config", path(&f), "--print-config"],
        &[("HERALD_API_KEY", "env-key-abc")],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!stdout.contains("env-key-abc") && !stdout.contains("file-secret-xyz"));
    let c: toml::Table = stdout.parse().unwrap();
    assert_eq!(c["authsvc"]["api_key"].as_str(), Some("********"));
    assert_eq!(c["authsvc"]["jwt_secret"].as_str(), Some("********"));

    let c = printed(&["standalone", "--print-config"], &[]);
    assert_eq!(
        c["standalone"]["api_key"].as_str(),
        Some(""),
        "unset shows empty"
    );
}

#[test]
fn every_subcommand_prints_its_sections() {
    let env = [("HERALD_MAX_PAYLOAD_BYTES", "1234")];
    for (program, sections) in [
        ("authsvc", &["authsvc", "limits", "tls"][..]),
        ("collector", &["collector", "infra", "limits", "tls"][..]),
        ("dispatcher", &["dispatcher", "infra", "tls"][..]),
        ("pusher", &["pusher", "infra", "limits", "tls"][..]),
    ] {
        let c = printed(&[program, "--print-config"], &env);
        let keys: Vec<&str> = c.keys().map(String::as_str).collect();
        assert_eq!(keys, sections, "{program}");
        if let Some(limits) = c.get("limits") {
            assert_eq!(
                limits["max_payload_bytes"].as_integer(),
                Some(1234),
                "{program}"
            );
        }
    }
    // The pusher checks client publishes with the collector's setting.
    let c = printed(
        &["pusher", "--max-payload-bytes", "99", "--print-config"],
        &[],
    );
    assert_eq!(c["limits"]["max_payload_bytes"].as_integer(), Some(99));
}

#[test]
fn standalone_prints_the_services_inside_as_they_will_run() {
    let f = config_file("[authsvc]\ndefault_ttl_secs = 60\n[pusher]\nnode_id = \"ignored\"\n");
    let c = printed(
        &[
            "standalone",
            "--config",
            path(&f),
            "--addr",
            "127.0.0.1:9999",
            "--print-config",
        ],
        &[("HERALD_API_KEY", "k"), ("HERALD_SEND_QUEUE", "7")],
    );
    let keys: Vec<&str> = c.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "standalone",
            "tls",
            "authsvc",
            "limits",
            "collector",
            "infra",
            "dispatcher",
            "pusher"
        ]
    );
    assert_eq!(c["standalone"]["addr"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(c["standalone"]["api_key"].as_str(), Some("********"));
    assert_eq!(c["authsvc"]["default_ttl_secs"].as_integer(), Some(60));
    assert_eq!(c["collector"]["addr"].as_str(), Some("127.0.0.1:9999"));
    assert_eq!(c["collector"]["api_key"].as_str(), Some("********"));
    assert_eq!(c["pusher"]["node_id"].as_str(), Some("standalone"));
    assert_eq!(c["pusher"]["demo_page"].as_bool(), Some(true));
    assert_eq!(c["pusher"]["send_queue"].as_integer(), Some(7));
}

#[test]
fn printed_settings_read_back_unchanged() {
    for program in ["authsvc", "collector", "dispatcher", "pusher", "standalone"] {
        let env = [("HERALD_NAMESPACE", "round-trip"), ("HERALD_API_KEY", "k")];
        let first = herald(&[program, "--print-config"], &env);
        assert!(first.status.success(), "{program}");
        let f = config_file(&String::from_utf8_lossy(&first.stdout));
        let again = herald(&[program, "--config", path(&f), "--print-config"], &[]);
        assert!(
            again.status.success(),
            "{program}: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert_eq!(first.stdout, again.stdout, "{program}");
    }
}

#[test]
fn the_example_file_names_every_setting_at_its_default() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/herald.example.toml");
    let text = std::fs::read_to_string(example).unwrap();
    // Uncomment every `# key = value` line.
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest
                    .split_once(" = ")
                    .is_some_and(|(k, _)| !k.contains(' ')) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    let f = config_file(&uncommented);
    for program in ["authsvc", "collector", "dispatcher", "pusher", "standalone"] {
        let defaults = printed(&[program, "--print-config"], &[]);
        let from_example = printed(&[program, "--config", path(&f), "--print-config"], &[]);
        assert_eq!(defaults, from_example, "{program}");
    }
    // ...and every key of every program is in it.
    let example: toml::Table = uncommented.parse().unwrap();
    for program in ["authsvc", "collector", "dispatcher", "pusher", "standalone"] {
        for (section, keys) in printed(&[program, "--print-config"], &[]) {
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    example.get(&section).and_then(|s| s.get(key)).is_some(),
                    "{section}.{key} missing from the example"
                );
            }
        }
    }
}

#[test]
fn refuses_unknown_keys_and_missing_required_settings() {
    let f = config_file("[collector]\noutbox_grace = 5\n");
    let out = herald(&["collector", "--config", path(&f), "--print-config"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("unknown key `outbox_grace` in [collector]"),
        "{stderr}"
    );

    let out = herald(&["collector"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("api_key") && stderr.contains("HERALD_API_KEY"),
        "{stderr}"
    );

    let out = herald(&["pusher"], &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("node_id"));

    let out = herald(
        &["collector", "--print-config"],
        &[("HERALD_NO_INGEST", "maybe")],
    );
    assert!(!out.status.success(), "a boolean must be a boolean");
}

#[test]
fn refuses_secrets_shorter_than_16_bytes() {
    let long = "a-long-enough-secret";
    let refused = |args: &[&str], env: &[(&str, &str)], setting: &str| {
        let out = herald(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} started with a short {setting}"
        );
        assert!(
            stderr.contains(setting) && stderr.contains("at least 16"),
            "{args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("short-key"),
            "the value is not shown: {stderr}"
        );
    };
    refused(
        &["collector"],
        &[("HERALD_API_KEY", "short-key")],
        "api_key",
    );
    refused(
        &["authsvc"],
        &[("HERALD_API_KEY", "short-key"), ("HERALD_JWT_SECRET", long)],
        "api_key",
    );
    refused(
        &["authsvc"],
        &[("HERALD_API_KEY", long), ("HERALD_JWT_SECRET", "short-key")],
        "jwt_secret",
    );
    // Standalone makes its own secrets when none is given; one the operator
    // gives is held to the same rule.
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap();
    refused(
        &["standalone", "--data-dir", dir, "--addr", "127.0.0.1:0"],
        &[("HERALD_API_KEY", "short-key")],
        "api_key",
    );
    // --print-config shows a configuration, it runs nothing: no refusal.
    let c = printed(
        &["collector", "--print-config"],
        &[("HERALD_API_KEY", "short-key")],
    );
    assert_eq!(c["collector"]["api_key"].as_str(), Some("********"));
}
