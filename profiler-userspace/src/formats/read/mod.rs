//! Reading profiles back from files, ours and other tools' (folded stacks,
//! pprof, Go's goroutine dumps), for `profiler diff`: the format is told
//! from the bytes, gzip is undone, and anything malformed gets one error
//! that names the file and the line or field, never a partial result.

pub mod folded;
pub mod goroutines;
pub mod pprof;

use std::{io::Read as _, path::Path};

use anyhow::{Context as _, bail};

use crate::model::LoadedProfile;

/// The largest file, or gzip content, a profile may be: far above any
/// real profile, low enough that a hostile file cannot exhaust memory.
pub const MAX_BYTES: u64 = 1 << 30;

/// Reads the profile in the file at `path`.
pub fn load(path: &Path) -> anyhow::Result<LoadedProfile> {
    let origin = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|err| match err.kind() {
        std::io::ErrorKind::NotFound => anyhow::anyhow!("cannot read {origin}: no such file"),
        _ => anyhow::Error::new(err).context(format!("cannot read {origin}")),
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {origin}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        bail!(
            "{origin} is larger than {} MiB; that is not a profile",
            MAX_BYTES >> 20
        );
    }
    parse(&bytes, &origin)
}

/// Reads a profile from its bytes; `origin` names it in errors.
pub fn parse(bytes: &[u8], origin: &str) -> anyhow::Result<LoadedProfile> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let inner = gunzip(bytes, origin)?;
        return parse_plain(&inner, origin);
    }
    parse_plain(bytes, origin)
}

fn gunzip(bytes: &[u8], origin: &str) -> anyhow::Result<Vec<u8>> {
    let mut inner = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut inner)
        .map_err(|err| {
            let what = if err.kind() == std::io::ErrorKind::UnexpectedEof {
                "is truncated".to_owned()
            } else {
                format!("is corrupt ({err})")
            };
            anyhow::anyhow!("{origin}: its gzip stream {what}; write the file again, completely")
        })?;
    if inner.len() as u64 > MAX_BYTES {
        bail!(
            "{origin}: it unzips to more than {} MiB; that is not a profile",
            MAX_BYTES >> 20
        );
    }
    Ok(inner)
}

fn parse_plain(bytes: &[u8], origin: &str) -> anyhow::Result<LoadedProfile> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        bail!("{origin} is empty: it holds no stacks to compare");
    }
    if let Some(what) = other_kind(bytes) {
        bail!(
            "{origin} is {what}, not a profile diff reads; give folded stacks (record -o FILE.folded) or pprof (-o FILE.pb.gz, or Go's /debug/pprof/...)"
        );
    }
    if !is_text(bytes) {
        return pprof::parse(bytes, origin);
    }
    let text = String::from_utf8_lossy(bytes);
    if goroutines::is_counts(&text) {
        goroutines::parse_counts(&text, origin)
    } else if goroutines::is_dump(&text) {
        goroutines::parse_dump(&text, origin)
    } else {
        folded::parse(&text, origin)
    }
}

/// Text, as opposed to protobuf: no control bytes but tabs and line ends.
/// A protobuf's tags and lengths are small numbers, so a pprof has many.
fn is_text(bytes: &[u8]) -> bool {
    !bytes
        .iter()
        .take(1 << 16)
        .any(|&b| b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r'))
}

/// Files people give by mistake, named.
fn other_kind(bytes: &[u8]) -> Option<&'static str> {
    let start = bytes.trim_ascii_start();
    if bytes.starts_with(b"\x7fELF") {
        Some("an ELF binary")
    } else if start.starts_with(b"<?xml") || start.starts_with(b"<svg") {
        Some("an SVG image (a flamegraph?)")
    } else if start.starts_with(b"{") || start.starts_with(b"[") && start.get(1) == Some(&b'{') {
        Some("JSON (speedscope?)")
    } else if bytes.starts_with(b"PK\x03\x04") {
        Some("a zip archive")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(bytes: &[u8]) -> String {
        parse(bytes, "f")
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    }

    #[test]
    fn other_files_are_named() {
        assert!(err(b"").contains("f is empty"));
        assert!(err(b"\x7fELF\x02\x01").contains("an ELF binary"));
        assert!(err(b"<?xml version=\"1.0\"?><svg>").contains("SVG"));
        assert!(err(b"{\"$schema\": 1}").contains("JSON"));
    }

    #[test]
    fn truncated_gzip_is_said() {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        std::io::Write::write_all(&mut gz, b"a;b 1\na;c 2\n".repeat(100).as_slice()).ok();
        let full = gz.finish().unwrap_or_default();
        assert!(parse(&full, "f").is_ok());
        let cut = &full[..full.len() / 2];
        assert!(
            err(cut).contains("f: its gzip stream is truncated"),
            "{}",
            err(cut)
        );
    }
}
