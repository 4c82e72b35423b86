//! The build info Go's linker writes into every binary, read by hand from
//! `.go.buildinfo` (no Rust crate reads it; Go's own reader is
//! `debug/buildinfo`). Stripped builds (`-ldflags="-s -w"`) keep it, so it
//! names the Go version, the main package and module, and the build settings
//! (`-ldflags`, `CGO_ENABLED`, `GOARCH`, ...) of any Go program.
//!
//! The blob is a 32-byte header (`\xff Go buildinf:`, pointer size, flags)
//! followed, from Go 1.18 (flags & 0x2, "inline strings"), by two
//! varint-length-prefixed strings: the version (`go1.27.3`) and the module
//! info (`path\t...`, `mod\t...`, `dep\t...`, `=>\t...`, `build\tKEY=VALUE`
//! lines between two 16-byte sentinels). Older binaries point to the strings
//! instead; they are not supported (Go 1.19 to 1.27 are).

use object::{Object as _, ObjectSection as _};

pub use super::error::GoError;

/// The magic at the start of the build info blob.
const MAGIC: &[u8; 14] = b"\xff Go buildinf:";
/// The blob is aligned to this many bytes.
const ALIGN: u64 = 16;
/// The header before the inline strings.
const HEADER_LEN: usize = 32;
/// Flags bit: the strings follow the header inline (Go 1.18+).
const FLAG_INLINE_STRINGS: u8 = 0x2;

/// A Go binary's build info.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuildInfo {
    /// The Go version that built it, as `go version` says it (`go1.27.3`).
    pub go_version: String,
    /// The main package's import path (`command-line-arguments` for
    /// `go build file.go`), if recorded.
    pub path: Option<String>,
    /// The main module, if built in module mode.
    pub main: Option<Module>,
    /// The module dependencies, in the order recorded.
    pub deps: Vec<Module>,
    /// The build settings, in the order recorded (`-ldflags` → `-s -w`,
    /// `CGO_ENABLED` → `1`, `GOARCH` → `amd64`, ...), values unquoted.
    pub settings: Vec<(String, String)>,
}

/// A module of the build info.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Module {
    pub path: String,
    pub version: String,
    /// The checksum (`h1:...`), when recorded.
    pub sum: Option<String>,
    /// What replaced it (`=>` line), if anything.
    pub replace: Option<Box<Module>>,
}

impl BuildInfo {
    /// The value of build setting `key` (e.g. `-ldflags`), if recorded.
    pub fn setting(&self, key: &str) -> Option<&str> {
        self.settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The Go release as (major, minor), e.g. `(1, 27)` for `go1.27.3`.
    pub fn go_release(&self) -> Option<(u32, u32)> {
        go_release(&self.go_version)
    }

    /// One line for people: the Go version, the main module or package,
    /// and the build settings that change what the binary is
    /// (`go1.27.3, example.com/app v1.2.0, -ldflags=-s -w, CGO_ENABLED=1`).
    pub fn summary(&self) -> String {
        let mut parts = vec![self.go_version.clone()];
        match (&self.main, &self.path) {
            (Some(main), _) if !main.path.is_empty() => {
                parts.push(format!("{} {}", main.path, main.version).trim().to_owned());
            }
            (_, Some(path)) => parts.push(path.clone()),
            _ => {}
        }
        for key in [
            "-buildmode",
            "-ldflags",
            "-tags",
            "CGO_ENABLED",
            "GOAMD64",
            "vcs.revision",
        ] {
            if let Some(value) = self.setting(key) {
                parts.push(format!("{key}={value}"));
            }
        }
        parts.join(", ")
    }
}

/// The (major, minor) release of a Go version string: `go1.27.3` and
/// `go1.22rc1` give `(1, 27)` and `(1, 22)`, `devel go1.27-abcdef ...`
/// gives `(1, 27)`; anything else `None`.
pub fn go_release(version: &str) -> Option<(u32, u32)> {
    let start = version.find("go1.")?;
    let rest = version.get(start + 2..)?;
    let mut parts = rest.splitn(2, '.');
    let major = parts.next()?.parse().ok()?;
    let minor_digits: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    let minor = minor_digits.parse().ok()?;
    Some((major, minor))
}

/// Whether `file` looks like a Go binary (it has a section only Go's linker
/// writes). Cheap: looks at section names only.
pub fn is_go(file: &object::File<'_>) -> bool {
    [
        ".go.buildinfo",
        ".gopclntab",
        ".data.rel.ro.gopclntab",
        ".note.go.buildid",
    ]
    .iter()
    .any(|name| file.section_by_name(name).is_some())
}

/// Reads the build info of `file`: `Ok(None)` when it is not a Go binary,
/// an error when it is one whose build info is missing, malformed or in a
/// format older than Go 1.18.
pub fn read(file: &object::File<'_>) -> Result<Option<BuildInfo>, GoError> {
    let Some(section) = file.section_by_name(".go.buildinfo") else {
        if is_go(file) {
            return Err(GoError::Unsupported(
                "a Go binary without a .go.buildinfo section (Go before 1.13?): Go 1.19 to 1.27 are supported".to_owned(),
            ));
        }
        return Ok(None);
    };
    let data = section.data().map_err(|err| GoError::Malformed {
        what: "build info",
        why: format!("cannot read .go.buildinfo: {err}"),
    })?;
    parse_section(section.address(), data).map(Some)
}

/// [`read`] of the ELF file `elf` (its bytes): an error too when they are
/// not an ELF file.
pub fn read_elf(elf: &[u8]) -> Result<Option<BuildInfo>, GoError> {
    read(&super::error::elf_file(elf)?)
}

/// Decodes the build info from the bytes of `.go.buildinfo` (at virtual
/// address `address`): the first aligned blob with the magic.
pub fn parse_section(address: u64, data: &[u8]) -> Result<BuildInfo, GoError> {
    let malformed = |why: &str| GoError::Malformed {
        what: "build info",
        why: why.to_owned(),
    };
    // The first offset whose address is aligned, then every ALIGN bytes.
    let first = usize::try_from((ALIGN - address % ALIGN) % ALIGN).unwrap_or(usize::MAX);
    let at = (first..data.len())
        .step_by(ALIGN as usize)
        .find(|&off| data.get(off..).is_some_and(|rest| rest.starts_with(MAGIC)))
        .ok_or_else(|| malformed("no build info magic in .go.buildinfo"))?;
    let header = data
        .get(at..at + HEADER_LEN)
        .ok_or_else(|| malformed("the header is cut short"))?;
    let flags = header.get(15).copied().unwrap_or(0);
    if flags & FLAG_INLINE_STRINGS == 0 {
        return Err(GoError::Unsupported(
            "Go build info in the pointer format of Go 1.17 and older: Go 1.19 to 1.27 are supported".to_owned(),
        ));
    }
    let rest = data.get(at + HEADER_LEN..).unwrap_or_default();
    let (version, rest) =
        length_prefixed(rest).ok_or_else(|| malformed("the Go version string is cut short"))?;
    let go_version = String::from_utf8_lossy(version).into_owned();
    if go_version.is_empty() {
        return Err(malformed("the Go version is empty"));
    }
    // Module info may be absent (empty) in programs not built by `go build`.
    let modinfo = length_prefixed(rest).map(|(m, _)| m).unwrap_or_default();
    let mut info = parse_modinfo(modinfo);
    info.go_version = go_version;
    Ok(info)
}

/// A varint-length-prefixed string at the start of `data`, and what follows.
fn length_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, n) = uvarint(data)?;
    let rest = data.get(n..)?;
    let len = usize::try_from(len).ok()?;
    Some((rest.get(..len)?, rest.get(len..)?))
}

/// An unsigned LEB128 varint (Go's `binary.Uvarint`): the value and how
/// many bytes it took, `None` if cut short or longer than 10 bytes.
pub(crate) fn uvarint(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, &byte) in data.iter().take(10).enumerate() {
        if i == 9 && byte > 1 {
            return None; // overflows 64 bits
        }
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Parses the module info: strips the sentinels around it (when there),
/// then reads its lines as `runtime/debug.ParseBuildInfo` does, but leniently:
/// lines it cannot read are skipped (the version matters more than a bad
/// setting).
fn parse_modinfo(raw: &[u8]) -> BuildInfo {
    let mut info = BuildInfo::default();
    // 16-byte binary sentinels before and after, the last ending in '\n'.
    let body = if raw.len() >= 33 && raw.get(raw.len() - 17) == Some(&b'\n') {
        raw.get(16..raw.len() - 16).unwrap_or_default()
    } else {
        &[]
    };
    let body = String::from_utf8_lossy(body);
    // Which module a `=>` line replaces: the main one, or a dep (index).
    enum Last {
        None,
        Main,
        Dep(usize),
    }
    let mut last = Last::None;
    for line in body.split('\n') {
        if let Some(path) = line.strip_prefix("path\t") {
            info.path = Some(path.to_owned());
        } else if let Some(module) = line.strip_prefix("mod\t") {
            info.main = module_line(module);
            last = if info.main.is_some() {
                Last::Main
            } else {
                Last::None
            };
        } else if let Some(module) = line.strip_prefix("dep\t") {
            last = match module_line(module) {
                Some(m) => {
                    info.deps.push(m);
                    Last::Dep(info.deps.len() - 1)
                }
                None => Last::None,
            };
        } else if let Some(replace) = line.strip_prefix("=>\t") {
            let elem: Vec<&str> = replace.split('\t').collect();
            if let [path, version, sum] = elem[..] {
                let new = Box::new(Module {
                    path: path.to_owned(),
                    version: version.to_owned(),
                    sum: (!sum.is_empty()).then(|| sum.to_owned()),
                    replace: None,
                });
                let target = match last {
                    Last::Main => info.main.as_mut(),
                    Last::Dep(i) => info.deps.get_mut(i),
                    Last::None => None,
                };
                if let Some(target) = target {
                    target.replace = Some(new);
                }
            }
            last = Last::None;
        } else if let Some(kv) = line.strip_prefix("build\t")
            && let Some(setting) = build_setting(kv)
        {
            info.settings.push(setting);
        }
    }
    info
}

/// A `mod`/`dep` line's columns: path, version and maybe a checksum.
fn module_line(columns: &str) -> Option<Module> {
    let elem: Vec<&str> = columns.split('\t').collect();
    let (path, version, sum) = match elem[..] {
        [path, version] => (path, version, None),
        [path, version, sum] => (path, version, (!sum.is_empty()).then_some(sum)),
        _ => return None,
    };
    Some(Module {
        path: path.to_owned(),
        version: version.to_owned(),
        sum: sum.map(str::to_owned),
        replace: None,
    })
}

/// A `build` line's `KEY=VALUE`; key and value may be Go-quoted.
fn build_setting(kv: &str) -> Option<(String, String)> {
    let (key, raw_value) = if kv.starts_with(['"', '`']) {
        let end = quoted_prefix_len(kv)?;
        let key = unquote(kv.get(..end)?)?;
        (key, kv.get(end..)?.strip_prefix('=')?)
    } else {
        let (key, value) = kv.split_once('=')?;
        if key.is_empty() {
            return None;
        }
        (key.to_owned(), value)
    };
    let value = if raw_value.starts_with(['"', '`']) {
        unquote(raw_value)?
    } else {
        raw_value.to_owned()
    };
    Some((key, value))
}

/// The length of the Go-quoted string at the start of `s`.
fn quoted_prefix_len(s: &str) -> Option<usize> {
    let quote = s.chars().next()?;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip(1) {
        if quote == '"' && escaped {
            escaped = false;
        } else if quote == '"' && c == '\\' {
            escaped = true;
        } else if c == quote {
            return Some(i + 1);
        }
    }
    None
}

/// Unquotes a Go string literal (`"..."` with escapes, or `` `...` ``),
/// as `strconv.Unquote`; `None` if it is not one.
pub(crate) fn unquote(s: &str) -> Option<String> {
    if let Some(inner) = s.strip_prefix('`') {
        let inner = inner.strip_suffix('`')?;
        return (!inner.contains('`')).then(|| inner.to_owned());
    }
    let inner = s.strip_prefix('"')?.strip_suffix('"')?;
    let mut out: Vec<u8> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c == '\n' {
            return None;
        }
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        let simple = match chars.next()? {
            'a' => Some(0x07),
            'b' => Some(0x08),
            'f' => Some(0x0c),
            'n' => Some(b'\n'),
            'r' => Some(b'\r'),
            't' => Some(b'\t'),
            'v' => Some(0x0b),
            '\\' => Some(b'\\'),
            '"' => Some(b'"'),
            '\'' => Some(b'\''),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                Some(
                    u8::from_str_radix(&hex, 16)
                        .ok()
                        .filter(|_| hex.len() == 2)?,
                )
            }
            d @ '0'..='7' => {
                let rest: String = chars.by_ref().take(2).collect();
                let octal = format!("{d}{rest}");
                Some(
                    u8::from_str_radix(&octal, 8)
                        .ok()
                        .filter(|_| octal.len() == 3)?,
                )
            }
            u @ ('u' | 'U') => {
                let digits = if u == 'u' { 4 } else { 8 };
                let hex: String = chars.by_ref().take(digits).collect();
                if hex.len() != digits {
                    return None;
                }
                let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                None
            }
            _ => return None,
        };
        if let Some(byte) = simple {
            out.push(byte);
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `.go.buildinfo` blob with inline strings, as Go 1.18+ writes it.
    fn blob(version: &str, modinfo: &str, flags: u8) -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        out.push(8);
        out.push(flags);
        out.resize(HEADER_LEN, 0);
        for s in [version, modinfo] {
            let mut len = s.len();
            loop {
                let byte = (len & 0x7f) as u8;
                len >>= 7;
                if len == 0 {
                    out.push(byte);
                    break;
                }
                out.push(byte | 0x80);
            }
            out.extend_from_slice(s.as_bytes());
        }
        out
    }

    fn framed(body: &str) -> String {
        format!("0123456789abcdef{body}\n0123456789abcde")
    }

    #[test]
    fn uvarint_decodes_and_rejects_cut_or_overlong() {
        assert_eq!(uvarint(&[0x05]), Some((5, 1)));
        assert_eq!(uvarint(&[0x8f, 0x06]), Some((0x30f, 2)));
        assert_eq!(uvarint(&[0x80]), None);
        assert_eq!(uvarint(&[]), None);
        assert_eq!(uvarint(&[0xff; 11]), None);
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(uvarint(&max), Some((u64::MAX, 10)));
    }

    #[test]
    fn reads_version_path_and_settings() {
        let body = "path\tcommand-line-arguments\nmod\texample.com/m\t(devel)\t\ndep\tgolang.org/x/sys\tv0.1.0\th1:abc=\n=>\t../sys\t(devel)\t\nbuild\t-compiler=gc\nbuild\t-ldflags=\"-s -w\"\nbuild\tCGO_ENABLED=0\nbuild\t\"we=ird\"=`x y`\n";
        let data = blob("go1.27.3", &framed(body), 2);
        let info = parse_section(0x56c000, &data).expect("parses");
        assert_eq!(info.go_version, "go1.27.3");
        assert_eq!(info.go_release(), Some((1, 27)));
        assert_eq!(info.path.as_deref(), Some("command-line-arguments"));
        let main = info.main.as_ref().expect("main module");
        assert_eq!(
            (main.path.as_str(), main.sum.as_deref()),
            ("example.com/m", None)
        );
        assert_eq!(info.deps.len(), 1);
        let replaced = info.deps[0].replace.as_ref().expect("replaced");
        assert_eq!(replaced.path, "../sys");
        assert_eq!(info.setting("-ldflags"), Some("-s -w"));
        assert_eq!(info.setting("CGO_ENABLED"), Some("0"));
        assert_eq!(info.setting("we=ird"), Some("x y"));
    }

    #[test]
    fn finds_the_aligned_magic_and_rejects_old_and_bad_blobs() {
        let mut data = vec![0u8; 16];
        data.extend(blob("go1.19.8", "", 2));
        let info = parse_section(0x1000, &data).expect("parses");
        assert_eq!((info.go_version.as_str(), info.path), ("go1.19.8", None));
        // The pointer format (Go 1.17 and older) names the version problem.
        let err = parse_section(0, &blob("go1.17", "", 0)).expect_err("old format");
        assert!(err.to_string().contains("Go 1.19 to 1.27"), "{err}");
        assert!(parse_section(0, b"nothing here").is_err());
        // Every truncation is an error or a result, never a panic.
        let full = blob("go1.22.10", &framed("path\tx\nbuild\tA=\"b\"\n"), 2);
        for cut in 0..full.len() {
            let _ = parse_section(0, &full[..cut]);
        }
    }

    #[test]
    fn go_releases() {
        assert_eq!(go_release("go1.19.8"), Some((1, 19)));
        assert_eq!(go_release("go1.22rc1"), Some((1, 22)));
        assert_eq!(go_release("devel go1.27-abcdef Mon"), Some((1, 27)));
        assert_eq!(go_release("weird"), None);
    }

    #[test]
    fn unquotes_go_strings() {
        assert_eq!(
            unquote(r#""a\tb\x41\101\u00e9\"""#).as_deref(),
            Some("a\tbAAé\"")
        );
        assert_eq!(unquote("`raw \\n`").as_deref(), Some("raw \\n"));
        assert_eq!(unquote(r#""bad\q""#), None);
        assert_eq!(unquote(r#""cut\x4""#), None);
        assert_eq!(unquote("\"open"), None);
    }
}
