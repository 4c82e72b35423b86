//! `profiler diff BASE NEW`: compare two profiles and hold the change to
//! gates, for CI; also `record --compare BASE`, which compares a recording
//! just made. Exit status: 0 within the gates, 1 when one trips, 2 when a
//! profile cannot be read or the two cannot be compared.

use std::{io::Write, path::PathBuf};

use anyhow::Context as _;
use prost::Message as _;

use crate::{
    compare::{self, DiffOptions, Gate, render},
    formats::{pprof, read},
    model::{LoadedFormat, LoadedProfile, Profile},
};

/// How a comparison is made and shown, and what it is held to.
#[derive(Debug, Clone, Default)]
pub struct CompareSettings {
    pub options: DiffOptions,
    pub gates: Vec<Gate>,
    /// How many functions, stacks and sites are listed (0: all).
    pub top: usize,
    /// JSON instead of the text table.
    pub json: bool,
    /// Where to write the differential flamegraph, if anywhere.
    pub svg: Option<PathBuf>,
}

/// The checked settings of one `profiler diff`.
#[derive(Debug, Clone)]
pub struct DiffConfig {
    pub base: PathBuf,
    pub new: PathBuf,
    pub settings: CompareSettings,
}

/// Gates that tripped: the comparison ran and was printed, but the change
/// is more than allowed (exit status 1).
#[derive(Debug, thiserror::Error)]
#[error("{0} of the gates tripped")]
pub struct GatesTripped(pub usize);

/// Compares the two files; `Ok(false)` when every gate holds, `Ok(true)`
/// when one trips, an error when a file cannot be read or compared.
pub fn run(config: DiffConfig) -> anyhow::Result<bool> {
    let base = read::load(&config.base)?;
    let new = read::load(&config.new)?;
    let tripped = compare(&base, &new, &config.settings, &mut std::io::stdout().lock())?;
    Ok(tripped > 0)
}

/// A recorded profile as a profile read back from its pprof file would be.
pub fn recorded(profile: &Profile) -> anyhow::Result<LoadedProfile> {
    let bytes = pprof::to_proto(profile, 0).encode_to_vec();
    let mut loaded = read::pprof::parse(&bytes, "this recording")?;
    loaded.format = LoadedFormat::Recorded;
    Ok(loaded)
}

/// Compares, writes the table (or JSON) to `out` and the differential
/// flamegraph to its file, checks the gates and says on stderr which
/// tripped, one line each. Returns how many tripped.
pub fn compare(
    base: &LoadedProfile,
    new: &LoadedProfile,
    settings: &CompareSettings,
    out: &mut dyn Write,
) -> anyhow::Result<usize> {
    let diff = compare::diff(base, new, &settings.options)?;
    let mut verdicts = Vec::with_capacity(settings.gates.len());
    for gate in &settings.gates {
        let verdict = gate.check(&diff)?;
        if verdict.matched == 0 {
            eprintln!(
                "profiler: warning: gate {:?} matched nothing in either profile; patterns match whole names (e.g. '*handle*')",
                gate.text
            );
        }
        verdicts.push((gate.text.clone(), verdict.tripped));
    }
    if settings.json {
        let json = render::json(&diff, settings.top, &verdicts);
        writeln!(out, "{json:#}").context("cannot write the comparison")?;
    } else {
        let mut text = render::text(&diff, settings.top);
        if !verdicts.is_empty() {
            let tripped = verdicts.iter().filter(|(_, t)| t.is_some()).count();
            text.push_str(&format!(
                "\nGates: {} checked, {tripped} tripped.\n",
                verdicts.len()
            ));
        }
        out.write_all(text.as_bytes())
            .context("cannot write the comparison")?;
    }
    out.flush().context("cannot write the comparison")?;
    if let Some(path) = &settings.svg {
        let mut file = std::io::BufWriter::new(
            std::fs::File::create(path)
                .with_context(|| format!("cannot create {}", path.display()))?,
        );
        render::svg(&diff, &mut file)
            .and_then(|()| file.flush())
            .with_context(|| format!("cannot write the flamegraph {}", path.display()))?;
        eprintln!(
            "profiler: wrote the differential flamegraph to {}",
            path.display()
        );
    }
    let mut tripped = 0;
    for (gate, why) in &verdicts {
        if let Some(why) = why {
            tripped += 1;
            eprintln!("profiler: gate tripped: {gate}: {why}");
        }
    }
    Ok(tripped)
}
