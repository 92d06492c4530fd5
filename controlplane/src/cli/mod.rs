//! The `controlplane` command: `serve`, `validate`, `status`, `push`.

pub mod push;
pub mod serve;
pub mod status;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::source::{LoadOptions, load_dir};

#[derive(Parser, Debug)]
#[command(
    name = "controlplane",
    about = "xDS controlplane: serves Envoy resources from a directory over ADS"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the resources of a directory over ADS (SotW and Delta), reloading on change.
    Serve(serve::ServeArgs),
    /// Check a config directory as `serve` would; exit non-zero naming what is wrong.
    Validate {
        dir: PathBuf,
        /// Treat warnings (a route to a cluster that does not exist) as errors.
        #[arg(long)]
        strict: bool,
    },
    /// Set a node group's resources through the management API (same checks as `serve`).
    Push(push::PushArgs),
    /// Print what each connected proxy was sent, ACKed and NACKed.
    Status {
        #[arg(long, default_value = "127.0.0.1:19000")]
        admin: String,
    },
}

/// `controlplane validate DIR`.
pub fn validate(dir: &std::path::Path, strict: bool) -> ExitCode {
    match load_dir(dir, LoadOptions { strict }) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("warning: {w}");
            }
            for (name, _, resources) in &loaded.groups {
                println!("group \"{name}\": {} resources OK", resources.len());
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("error: {e}");
            }
            eprintln!("{}: {} error(s)", dir.display(), errors.len());
            ExitCode::FAILURE
        }
    }
}
