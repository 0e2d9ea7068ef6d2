//! The command line every Herald program shares: its settings' flags, the
//! configuration file, and `--print-config`.

use super::{Settings, file_layout, load};
use anyhow::anyhow;
use std::path::PathBuf;

/// A program's command line: `C`'s flags plus `--config` and
/// `--print-config`.
#[derive(clap::Args)]
pub struct Cli<C: Settings> {
    #[command(flatten)]
    pub flags: C::Flags,

    /// TOML configuration file; environment variables and flags override it.
    #[arg(long = "config", env = "HERALD_CONFIG", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Print the effective settings (secrets masked) as a configuration file
    /// and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl<C: Settings> Cli<C> {
    /// The settings this command line gives.
    pub fn load(&self) -> anyhow::Result<C> {
        load::<C>(self.config_file.as_deref(), &self.flags)
    }

    /// The settings to run with, or `None` once they were printed for
    /// `--print-config`.
    pub fn configure(&self) -> anyhow::Result<Option<C>> {
        let config = self.load()?;
        if self.print_config {
            print!("{}", toml::to_string(&file_layout(&config)?)?);
            return Ok(None);
        }
        config
            .check()
            .map_err(|e| anyhow!("{} configuration: {e}", C::SECTION))?;
        Ok(Some(config))
    }

    /// Runs the program with these settings (or prints them).
    pub async fn run<F, R>(&self, program: F) -> anyhow::Result<()>
    where
        F: FnOnce(C) -> R,
        R: Future<Output = anyhow::Result<()>>,
    {
        match self.configure()? {
            Some(config) => program(config).await,
            None => Ok(()),
        }
    }
}

/// Flags `F` as the environment alone sets them: a program's environment
/// layer without its command line (for the programs `herald standalone`
/// runs inside itself).
pub fn environment<F: clap::Args>() -> Result<F, clap::Error> {
    let command = F::augment_args(clap::Command::new("herald").no_binary_name(true));
    let matches = command.try_get_matches_from(std::iter::empty::<String>())?;
    F::from_arg_matches(&matches)
}
