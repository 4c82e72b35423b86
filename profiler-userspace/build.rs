//! Builds `profiler-ebpf` for the BPF target with aya-build (pinned nightly,
//! bpf-linker) and leaves the object in `OUT_DIR/profiler` for `attach` to
//! embed. `cargo xtask setup` installs that toolchain.
use anyhow::Context as _;

/// The nightly that builds the eBPF crate; `xtask` installs the same one.
const EBPF_TOOLCHAIN: &str = "nightly-2026-10-30";

fn main() -> anyhow::Result<()> {
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").context("cargo did not set CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir).join("../profiler-ebpf");
    let ebpf_dir = ebpf_dir
        .canonicalize()
        .with_context(|| format!("the eBPF crate is missing at {}", ebpf_dir.display()))?;
    let ebpf_dir = ebpf_dir
        .to_str()
        .context("the eBPF crate's path is not UTF-8")?;
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "profiler-ebpf",
            root_dir: ebpf_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(EBPF_TOOLCHAIN),
    )
    .context("building the eBPF programs failed; run `cargo xtask setup` to install the pinned nightly and bpf-linker")
}
