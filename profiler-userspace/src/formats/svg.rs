//! Flamegraph SVG through inferno: a title naming the target and kind, the
//! unit in the tooltips, inferno's search, a palette per kind (hot for cpu,
//! blue for off-CPU, purple for lock waits), kernel frames in their own
//! colour and structural frames (locks, `[blocked]`, wakers) in grey.

use std::io::Write;

use inferno::flamegraph::{
    self,
    color::{BasicPalette, Color, Palette, PaletteMap},
};

use crate::{
    formats::folded::{self, FoldedOptions},
    model::{FrameKind, Profile, ProfileKind},
};

const KERNEL: Color = Color {
    r: 238,
    g: 150,
    b: 40,
};
const MARKER: Color = Color {
    r: 200,
    g: 200,
    b: 200,
};

/// Writes the profile as an interactive flamegraph SVG.
pub fn write(
    profile: &Profile,
    options: FoldedOptions,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let lines = folded::lines(profile, options);
    let text: Vec<String> = lines
        .iter()
        .map(|(stack, v)| format!("{stack} {v}"))
        .collect();
    let mut palette_map = PaletteMap::default();
    for sample in &profile.samples {
        for frame in profile.drawn_frames(sample) {
            match frame.kind {
                FrameKind::Kernel => {
                    palette_map.insert(format!("{}_[k]", frame.name), KERNEL);
                }
                FrameKind::Marker | FrameKind::Lost => {
                    palette_map.insert(&frame.name, MARKER);
                }
                _ => {}
            }
        }
    }
    let mut opts = flamegraph::Options::default();
    opts.palette_map = Some(&mut palette_map);
    let (palette, count_name, what) = match profile.kind {
        ProfileKind::Cpu => (BasicPalette::Hot, "samples", "CPU"),
        ProfileKind::OffCpu => (BasicPalette::Blue, "ns", "off-CPU time"),
        ProfileKind::Futex => (BasicPalette::Purple, "ns", "futex lock waits"),
        ProfileKind::Threads => (BasicPalette::Aqua, "threads", "threads now"),
        ProfileKind::Goroutines => (BasicPalette::Green, "goroutines", "goroutines now"),
        ProfileKind::GoMutex => (BasicPalette::Red, "ns", "Go mutex contention (by unlocker)"),
        ProfileKind::GoBlock => (BasicPalette::Aqua, "ns", "Go blocked goroutines"),
    };
    opts.colors = Palette::Basic(palette);
    opts.count_name = count_name.to_owned();
    opts.title = format!("{what} of {}", profile.target());
    opts.subtitle = Some(match profile.kind {
        ProfileKind::Cpu => format!(
            "{} samples at {} Hz over {:.1} s; kernel frames in orange",
            profile.total(),
            profile.frequency,
            profile.duration.as_secs_f64()
        ),
        ProfileKind::Threads | ProfileKind::Goroutines => format!(
            "{} {} at one moment; kernel frames in orange",
            profile.total(),
            profile.kind.name()
        ),
        ProfileKind::OffCpu | ProfileKind::Futex | ProfileKind::GoMutex | ProfileKind::GoBlock => {
            format!(
                "{:.3} s over {:.1} s of recording; kernel frames in orange",
                profile.total() as f64 / 1e9,
                profile.duration.as_secs_f64()
            )
        }
    });
    opts.deterministic = true;
    if text.is_empty() {
        // inferno refuses an empty profile; say so in an SVG of our own.
        return writeln!(
            out,
            r#"<?xml version="1.0" standalone="no"?><svg version="1.1" width="600" height="60" xmlns="http://www.w3.org/2000/svg"><text x="10" y="30">No samples: {} recorded nothing for PID {}.</text></svg>"#,
            profile.kind.name(),
            profile.pid
        );
    }
    flamegraph::from_lines(&mut opts, text.iter().map(String::as_str), out)
        .map_err(|err| std::io::Error::other(err.to_string()))
}
