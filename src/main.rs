//! The `kaigo-field` binary: parse, start logging, dispatch, map errors to an exit code.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "kaigo_field=info,warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = kaigo_field::cli::Cli::parse();
    match kaigo_field::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("エラー: {e:#}");
            ExitCode::FAILURE
        }
    }
}
