//! Merging the layers into a program's settings, and the file layout the
//! settings are read from and printed in.

use super::{SECTIONS, Settings};
use anyhow::{Context, anyhow, bail};
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Configuration files are short; anything longer is a mistake (or an
/// attack), refused before it is read into memory.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a program's settings: its defaults, then `file` (if any), then
/// `overrides`, the flags and environment variables clap read.
pub fn load<C: Settings>(file: Option<&Path>, overrides: &C::Flags) -> anyhow::Result<C> {
    let mut figment = Figment::new();
    if let Some(path) = file {
        figment = figment.merge(FileSections::read::<C>(path)?);
    }
    let given = Value::serialize(overrides).context("serializing flags")?;
    let given = without_empty(given)
        .into_dict()
        .ok_or_else(|| anyhow!("flags must serialize as a table"))?;
    Ok(figment.merge(Serialized::defaults(given)).extract::<C>()?)
}

/// Drops the `None`s of flags that were not given, so they override nothing.
fn without_empty(value: Value) -> Value {
    match value {
        Value::Dict(tag, dict) => Value::Dict(
            tag,
            dict.into_iter()
                .filter(|(_, v)| !matches!(v, Value::Empty(..)))
                .map(|(k, v)| (k, without_empty(v)))
                .collect(),
        ),
        other => other,
    }
}

/// `config` as a file would hold it: its own keys under `[<section>]`, its
/// shared sections beside. Secrets come out masked (see [`super::Secret`]).
pub fn file_layout<C: Settings>(config: &C) -> anyhow::Result<toml::Table> {
    let mut own = toml::Table::try_from(config).context("serializing settings")?;
    let mut file = toml::Table::new();
    let shared: Vec<(String, toml::Value)> = C::SHARED
        .iter()
        .filter_map(|name| own.remove(*name).map(|v| (name.to_string(), v)))
        .collect();
    file.insert(C::SECTION.to_string(), toml::Value::Table(own));
    file.extend(shared);
    Ok(file)
}

/// The sections of a configuration file that one program reads, laid out
/// as its settings struct: its own section's keys at the top, the shared
/// sections as tables. Errors name keys as the file does.
struct FileSections {
    path: PathBuf,
    section: &'static str,
    shared: &'static [&'static str],
    data: Dict,
}

impl FileSections {
    fn read<C: Settings>(path: &Path) -> anyhow::Result<Self> {
        let shown = path.display();
        let file = std::fs::File::open(path)
            .with_context(|| format!("opening configuration file {shown}"))?;
        let mut text = String::new();
        file.take(MAX_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .with_context(|| format!("reading configuration file {shown}"))?;
        if text.len() as u64 > MAX_FILE_BYTES {
            bail!("configuration file {shown} is larger than {MAX_FILE_BYTES} bytes");
        }
        let sections: Dict = Toml::from_str(&text)
            .map_err(|e| anyhow!("configuration file {shown} is not valid TOML: {e}"))?;
        let known = Value::serialize(C::default())
            .ok()
            .and_then(Value::into_dict)
            .context("settings must serialize as a table")?;

        let mut data = Dict::new();
        for (name, value) in sections {
            if !SECTIONS.contains(&name.as_str()) {
                bail!(
                    "configuration file {shown}: unknown key `{name}`: settings belong in one of the sections {}",
                    list(SECTIONS.iter().map(|s| format!("[{s}]")))
                );
            }
            let own = name == C::SECTION;
            if !own && !C::SHARED.contains(&name.as_str()) {
                continue; // another program's section: that program checks it
            }
            let Value::Dict(_, table) = value else {
                bail!("configuration file {shown}: `{name}` must be a section ([{name}])");
            };
            let expected = if own {
                let mut own_keys = known.clone();
                own_keys.retain(|k, _| !C::SHARED.contains(&k.as_str()));
                own_keys
            } else {
                known
                    .get(&name)
                    .and_then(Value::as_dict)
                    .cloned()
                    .unwrap_or_default()
            };
            if let Some(unknown) = table.keys().find(|k| !expected.contains_key(*k)) {
                bail!(
                    "configuration file {shown}: unknown key `{unknown}` in [{name}] (its keys: {})",
                    list(expected.keys())
                );
            }
            if own {
                data.extend(table);
            } else {
                data.insert(name, Value::from(table));
            }
        }
        Ok(Self {
            path: path.to_path_buf(),
            section: C::SECTION,
            shared: C::SHARED,
            data,
        })
    }
}

fn list(items: impl Iterator<Item = impl std::fmt::Display>) -> String {
    items.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}

impl Provider for FileSections {
    fn metadata(&self) -> Metadata {
        let (section, shared) = (self.section, self.shared);
        // Keys of the program's own section were lifted to the top: name
        // them as the file does.
        Metadata::from("(TOML configuration file)", self.path.as_path()).interpolater(
            move |_: &Profile, keys: &[&str]| match keys.first() {
                Some(first) if shared.contains(first) => keys.join("."),
                _ => format!("{section}.{}", keys.join(".")),
            },
        )
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.data.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Infra, InfraFlags, Secret};
    use serde::{Deserialize, Serialize};
    use std::io::Write;

    /// A program's settings, shaped like the services' own.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    struct Demo {
        port: u16,
        name: String,
        key: Secret,
        infra: Infra,
    }

    impl Default for Demo {
        fn default() -> Self {
            Self {
                port: 1,
                name: "default".into(),
                key: Secret::default(),
                infra: Infra::default(),
            }
        }
    }

    #[derive(clap::Args, Default, Serialize)]
    struct DemoFlags {
        #[arg(long)]
        port: Option<u16>,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        key: Option<String>,
        #[command(flatten)]
        infra: InfraFlags,
    }

    impl Settings for Demo {
        const SECTION: &'static str = "collector";
        const SHARED: &'static [&'static str] = &["infra"];
        type Flags = DemoFlags;
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn error(text: &str) -> String {
        let f = file(text);
        load::<Demo>(Some(f.path()), &DemoFlags::default())
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_without_file_or_flags() {
        let config: Demo = load(None, &DemoFlags::default()).unwrap();
        assert_eq!(config, Demo::default());
    }

    #[test]
    fn the_file_overrides_defaults_and_given_flags_override_the_file() {
        let f = file(
            "[collector]\nport = 2\nname = \"file\"\n\
             [infra]\nnamespace = \"file-ns\"\npartitions = 3\n",
        );
        let from_file: Demo = load(Some(f.path()), &DemoFlags::default()).unwrap();
        assert_eq!(from_file.port, 2);
        assert_eq!(from_file.name, "file");
        assert_eq!(from_file.infra.namespace, "file-ns");
        assert_eq!(from_file.infra.partitions, 3);
        assert_eq!(from_file.infra.redis_url, Infra::default().redis_url);

        let flags = DemoFlags {
            port: Some(4),
            infra: InfraFlags {
                partitions: Some(5),
                ..InfraFlags::default()
            },
            ..DemoFlags::default()
        };
        let flagged: Demo = load(Some(f.path()), &flags).unwrap();
        assert_eq!(flagged.port, 4, "a given flag beats the file");
        assert_eq!(flagged.infra.partitions, 5, "in a shared section too");
        assert_eq!(
            flagged.name, "file",
            "a flag not given leaves the file's value"
        );
        assert_eq!(flagged.infra.namespace, "file-ns");
    }

    #[test]
    fn other_programs_sections_are_left_to_them() {
        let f = file("[pusher]\nanything = 1\n[limits]\nwhatever = true\n");
        let config: Demo = load(Some(f.path()), &DemoFlags::default()).unwrap();
        assert_eq!(config, Demo::default());
    }

    #[test]
    fn refuses_unknown_keys_naming_them() {
        let e = error("[collector]\nprot = 2\n");
        assert!(
            e.contains("unknown key `prot` in [collector]") && e.contains("key, name, port"),
            "{e}"
        );
        let e = error("[infra]\nnamepsace = \"x\"\n");
        assert!(e.contains("unknown key `namepsace` in [infra]"), "{e}");
        let e = error("[colector]\nport = 2\n");
        assert!(e.contains("unknown key `colector`"), "{e}");
        let e = error("namespace = \"x\"\n");
        assert!(
            e.contains("unknown key `namespace`") && e.contains("[infra]"),
            "{e}"
        );
        let e = error("[collector]\ninfra = 2\n");
        assert!(e.contains("unknown key `infra` in [collector]"), "{e}");
        let e = error("collector = 2\n");
        assert!(e.contains("`collector` must be a section"), "{e}");
    }

    #[test]
    fn type_errors_name_the_key_as_the_file_does() {
        let f = file("[collector]\nport = \"eighty\"\n");
        let e = load::<Demo>(Some(f.path()), &DemoFlags::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"collector.port\""), "{e}");
        assert!(e.contains(&f.path().display().to_string()), "{e}");
        let e = error("[infra]\npartitions = \"eight\"\n");
        assert!(e.contains("\"infra.partitions\""), "{e}");
    }

    #[test]
    fn refuses_bad_toml_a_missing_file_and_a_huge_one() {
        assert!(error("[collector\n").contains("not valid TOML"));
        let missing = load::<Demo>(
            Some(Path::new("/nonexistent/herald.toml")),
            &DemoFlags::default(),
        );
        assert!(
            missing
                .unwrap_err()
                .to_string()
                .contains("/nonexistent/herald.toml")
        );
        let huge = format!("# {}\n", "x".repeat(MAX_FILE_BYTES as usize));
        assert!(error(&huge).contains("larger than"));
    }

    #[test]
    fn the_file_layout_masks_secrets_and_reads_back() {
        let config = Demo {
            key: Secret::from("hunter2"),
            port: 9,
            ..Demo::default()
        };
        let layout = file_layout(&config).unwrap();
        let text = toml::to_string(&layout).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(layout["collector"]["key"].as_str(), Some("********"));
        assert_eq!(layout["collector"]["port"].as_integer(), Some(9));
        assert!(layout["collector"].get("infra").is_none());
        assert_eq!(layout["infra"]["namespace"].as_str(), Some("herald"));

        let f = file(&text);
        let read: Demo = load(Some(f.path()), &DemoFlags::default()).unwrap();
        assert_eq!(read.port, 9);
        assert_eq!(read.infra, config.infra);
    }
}
