//! A file a command writes: opened before anything is attached or read so
//! an unwritable path fails first, removed again if nothing is written,
//! `-` for stdout.

use std::{
    fs::File,
    io::{BufWriter, Write as _},
    path::{Path, PathBuf},
};

use anyhow::Context as _;

use crate::{
    formats::{
        self, Format,
        folded::{self, FoldedOptions},
    },
    model::Profile,
};

/// The output file, opened before anything is attached so an unwritable path
/// fails first; removed again if the recording never starts.
pub struct Output {
    path: PathBuf,
    file: Option<File>,
    created: bool,
    kept: bool,
}

impl Output {
    pub fn open(path: &Path) -> anyhow::Result<Output> {
        if path == Path::new("-") {
            return Ok(Output {
                path: path.to_owned(),
                file: None,
                created: false,
                kept: true,
            });
        }
        if path.is_dir() {
            anyhow::bail!(
                "cannot write the profile to {}: it is a directory; give a file name such as {}/cpu.folded",
                path.display(),
                path.display()
            );
        }
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(path)
            .with_context(|| {
                format!(
                    "cannot write the profile to {} (checked before attaching); choose a writable path with -o",
                    path.display()
                )
            })?;
        Ok(Output {
            path: path.to_owned(),
            file: Some(file),
            created: !existed,
            kept: false,
        })
    }

    pub fn write(
        mut self,
        profile: &Profile,
        format: Format,
        options: FoldedOptions,
        start_unix_ns: i64,
    ) -> anyhow::Result<String> {
        self.kept = true;
        let stacks = folded::lines(profile, options).len();
        match self.file.take() {
            None => {
                let stdout = std::io::stdout();
                let mut out = BufWriter::new(stdout.lock());
                formats::write(format, profile, options, start_unix_ns, &mut out)
                    .and_then(|()| out.flush())
                    .context("cannot write the profile to stdout")?;
                Ok(format!(
                    "{} to stdout ({stacks} unique stacks)",
                    format.name()
                ))
            }
            Some(file) => {
                file.set_len(0)
                    .with_context(|| format!("cannot truncate {}", self.path.display()))?;
                let mut out = BufWriter::new(file);
                formats::write(format, profile, options, start_unix_ns, &mut out)
                    .and_then(|()| out.flush())
                    .with_context(|| {
                        format!("cannot write the profile to {}", self.path.display())
                    })?;
                Ok(format!(
                    "{} ({}, {stacks} unique stacks)",
                    self.path.display(),
                    format.name()
                ))
            }
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if !self.kept && self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}
