//! The error every reader of Go binaries returns, and the ELF parsing they
//! share.

/// Go 1.16 and 1.17 (not supported).
pub(super) const MAGIC_GO116: u32 = 0xffff_fffa;
/// Go 1.2 to 1.15 (not supported).
const MAGIC_GO12: u32 = 0xffff_fffb;

/// What the errors say is supported.
const SUPPORTED: &str = "Go 1.19 to 1.27 are supported";

/// An error reading Go's tables from a binary.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    /// A pclntab of a Go version this reader does not know.
    #[error("unsupported Go symbol table (magic {magic:#x}{version}): {SUPPORTED}", version = magic_version(*magic))]
    UnsupportedMagic { magic: u32 },
    /// Something this reader does not support (the sentence says what).
    #[error("unsupported Go binary: {0}")]
    Unsupported(String),
    /// Data that does not decode.
    #[error("malformed Go {what}: {why}")]
    Malformed { what: &'static str, why: String },
}

/// The Go versions that wrote a known but unsupported magic, for the error.
fn magic_version(magic: u32) -> &'static str {
    match magic {
        MAGIC_GO116 => ", written by Go 1.16 or 1.17",
        MAGIC_GO12 => ", written by Go 1.2 to 1.15",
        _ => "",
    }
}

/// Parses the bytes of an ELF file.
pub(crate) fn elf_file(elf: &[u8]) -> Result<object::File<'_>, GoError> {
    object::File::parse(elf).map_err(|err| GoError::Malformed {
        what: "binary",
        why: format!("not an ELF file: {err}"),
    })
}
