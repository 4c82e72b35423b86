//! Writing a [`Profile`] out in the formats other tools read, chosen by
//! `--format` or the output's extension: the last stage of a sample's path.
//! Each format is a submodule with a `write` function; [`write`] picks one.

pub mod folded;
pub mod pprof;
pub mod pprof_heap;
pub mod read;
pub mod speedscope;
pub mod svg;

use std::{io::Write, path::Path};

use anyhow::bail;

use crate::model::Profile;

/// An output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Collapsed stacks (`.folded`, `.txt`).
    Folded,
    /// Flamegraph SVG (`.svg`).
    Svg,
    /// pprof protobuf, gzipped (`.pb.gz`, `.pprof`).
    Pprof,
    /// speedscope JSON (`.json`).
    Speedscope,
}

/// The choices, as error messages list them.
pub const CHOICES: &str =
    "folded (.folded, .txt), svg (.svg), pprof (.pb.gz, .pprof), speedscope (.json)";

impl Format {
    /// Parses a `--format` value.
    pub fn parse(name: &str) -> anyhow::Result<Format> {
        Ok(match name {
            "folded" | "collapsed" | "txt" => Format::Folded,
            "svg" | "flamegraph" => Format::Svg,
            "pprof" | "pb.gz" => Format::Pprof,
            "speedscope" | "json" => Format::Speedscope,
            other => bail!("--format: unknown format {other:?}; choose from {CHOICES}"),
        })
    }

    /// The format an output path's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
        if name.ends_with(".pb.gz") || name.ends_with(".pprof") || name.ends_with(".pb") {
            return Some(Format::Pprof);
        }
        match path
            .extension()?
            .to_string_lossy()
            .to_ascii_lowercase()
            .as_str()
        {
            "folded" | "txt" | "collapsed" => Some(Format::Folded),
            "svg" => Some(Format::Svg),
            "json" => Some(Format::Speedscope),
            _ => None,
        }
    }

    /// The format of an output: `--format` if given, else the extension.
    pub fn for_output(path: &Path, format: Option<Format>) -> anyhow::Result<Format> {
        if let Some(format) = format {
            return Ok(format);
        }
        if path == Path::new("-") {
            return Ok(Format::Folded);
        }
        match Format::from_path(path) {
            Some(format) => Ok(format),
            None => bail!(
                "cannot tell the format of {} from its extension; use one of {CHOICES}, or give --format",
                path.display()
            ),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Folded => "folded stacks",
            Format::Svg => "flamegraph SVG",
            Format::Pprof => "pprof",
            Format::Speedscope => "speedscope JSON",
        }
    }
}

/// Writes `profile` in `format`. `start_unix_ns` is when the recording began.
pub fn write(
    format: Format,
    profile: &Profile,
    options: folded::FoldedOptions,
    start_unix_ns: i64,
    out: &mut impl Write,
) -> std::io::Result<()> {
    match format {
        Format::Folded => folded::write(profile, options, out),
        Format::Svg => svg::write(profile, options, out),
        Format::Pprof => pprof::write(profile, start_unix_ns, out),
        Format::Speedscope => speedscope::write(profile, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_by_extension() {
        let f = |p: &str| Format::from_path(Path::new(p));
        assert_eq!(f("a.folded"), Some(Format::Folded));
        assert_eq!(f("a.txt"), Some(Format::Folded));
        assert_eq!(f("a.svg"), Some(Format::Svg));
        assert_eq!(f("a.pb.gz"), Some(Format::Pprof));
        assert_eq!(f("a.PPROF"), Some(Format::Pprof));
        assert_eq!(f("a.json"), Some(Format::Speedscope));
        assert_eq!(f("a.gz"), None);
        assert_eq!(f("a"), None);
        let err = Format::for_output(Path::new("a.xyz"), None)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("pprof (.pb.gz")));
        assert_eq!(
            Format::for_output(Path::new("a.xyz"), Some(Format::Svg)).ok(),
            Some(Format::Svg)
        );
    }
}
