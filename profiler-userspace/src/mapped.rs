//! Bytes of a file mapped into memory, shared and sliced: a binary's
//! sections (a Go binary's `.text` and `.gopclntab`, unwind sections) are
//! read in place from the page cache, never copied whole into the heap.

use std::{fmt, ops::Deref, ops::Range, path::Path, sync::Arc};

/// A shared, read-only run of bytes: part of a mapped file, or (for what
/// is in no file, such as the vDSO, or a section that had to be
/// decompressed) of a heap buffer.
#[derive(Clone)]
pub struct Bytes {
    backing: Backing,
    range: Range<usize>,
}

#[derive(Clone)]
enum Backing {
    Mapped(Arc<memmap2::Mmap>),
    Owned(Arc<[u8]>),
}

impl Bytes {
    /// Maps a whole file.
    pub fn map(path: impl AsRef<Path>) -> std::io::Result<Bytes> {
        let file = std::fs::File::open(path)?;
        // SAFETY: a read-only private mapping. A file truncated while
        // mapped would fault on access, as for every reader that maps ELF
        // files (binaries in use are not truncated in place: they are
        // replaced, and the old inode stays).
        let map = unsafe { memmap2::Mmap::map(&file) }?;
        let len = map.len();
        Ok(Bytes {
            backing: Backing::Mapped(Arc::new(map)),
            range: 0..len,
        })
    }

    /// `range` of these bytes (relative to their start), sharing them.
    pub fn slice(&self, range: Range<usize>) -> Option<Bytes> {
        if range.start > range.end || range.end > self.range.len() {
            return None;
        }
        Some(Bytes {
            backing: self.backing.clone(),
            range: self.range.start + range.start..self.range.start + range.end,
        })
    }

    /// The part of these bytes that `part` (a slice borrowed from them, as
    /// an ELF parser hands out section data) is, sharing them; `None` when
    /// `part` lies elsewhere (a decompressed section).
    pub fn within(&self, part: &[u8]) -> Option<Bytes> {
        let base = self.as_ptr() as usize;
        let start = (part.as_ptr() as usize).checked_sub(base)?;
        self.slice(start..start.checked_add(part.len())?)
    }

    /// The part `part` of these bytes, or a copy of it when it lies
    /// elsewhere.
    pub fn within_or_copy(&self, part: &[u8]) -> Bytes {
        self.within(part)
            .unwrap_or_else(|| Bytes::from(part.to_vec()))
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        let all: &[u8] = match &self.backing {
            Backing::Mapped(map) => map,
            Backing::Owned(bytes) => bytes,
        };
        all.get(self.range.clone()).unwrap_or_default()
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(bytes: Vec<u8>) -> Bytes {
        let len = bytes.len();
        Bytes {
            backing: Backing::Owned(bytes.into()),
            range: 0..len,
        }
    }
}

impl Default for Bytes {
    fn default() -> Bytes {
        Bytes::from(Vec::new())
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match self.backing {
            Backing::Mapped(_) => "mapped",
            Backing::Owned(_) => "owned",
        };
        write!(f, "Bytes({how}, {} bytes)", self.range.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_share_the_mapping_and_stay_in_bounds() {
        let exe = Bytes::map("/proc/self/exe").expect("map the test binary");
        assert!(exe.len() > 4 && &exe[..4] == b"\x7fELF");
        let head = exe.slice(1..4).expect("in bounds");
        assert_eq!(&*head, b"ELF");
        assert!(exe.slice(0..exe.len() + 1).is_none());
        let inner = exe.within(&exe[10..20]).expect("borrowed from it");
        assert_eq!(&*inner, &exe[10..20]);
        let elsewhere = vec![1u8, 2, 3];
        assert!(exe.within(&elsewhere).is_none());
        assert_eq!(&*exe.within_or_copy(&elsewhere), &[1, 2, 3]);
    }
}
