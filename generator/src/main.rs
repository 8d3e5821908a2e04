//! `gen-community`: writes a synthetic community as NDJSON on stdout.

use anyhow::{bail, Context};
use generator::{generate, to_ndjson, Spec};
use std::io::Write;

fn main() -> anyhow::Result<()> {
    let mut spec = Spec::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--community" => spec.community_id = value()?,
            "--seed" => spec.seed = value()?.parse().context("--seed: must be an integer")?,
            "--members" => spec.members = value()?.parse().context("--members: must be an integer")?,
            "--groups" => spec.groups = value()?.parse().context("--groups: must be an integer")?,
            "--days" => spec.days = value()?.parse().context("--days: must be an integer")?,
            "--start" => spec.start = value()?.parse().context("--start: must be a date like 2024-01-01")?,
            "--no-bot" => spec.with_bot = false,
            "-h" | "--help" => {
                println!("gen-community [--community ID] [--seed N] [--members N] [--groups N] [--days N] [--start YYYY-MM-DD] [--no-bot]");
                return Ok(());
            }
            other => bail!("unknown flag {other} (see --help)"),
        }
    }
    let events = generate(&spec);
    std::io::stdout().lock().write_all(to_ndjson(&events).as_bytes())?;
    eprintln!("{} events, {} members, {} groups", events.len(), spec.members, spec.groups);
    Ok(())
}
