//! A comparison shown: a text table for people (functions that changed
//! most, stacks that appeared and vanished, goroutines by creation site),
//! JSON for machines, and a differential flamegraph through inferno (the
//! new profile's shape, red where it grew, blue where it shrank).

use std::{fmt::Write as _, io::Write};

use inferno::{differential, flamegraph};
use serde_json::{Value, json};

use super::diff::{Change, Diff, FunctionChange, NOISE_SIGMAS, Side, StackChange};

/// Frames of a stack shown in the text, leaf first.
const STACK_FRAMES: usize = 6;

/// The comparison as a text table: the `top` functions that changed most
/// and at most `top` stacks that appeared and vanished (0: all).
pub fn text(diff: &Diff, top: usize) -> String {
    let limit = |n: usize| if top == 0 { n } else { n.min(top) };
    let mut out = String::new();
    let _ = writeln!(out, "base: {}", side(&diff.base));
    let _ = writeln!(out, "new:  {}", side(&diff.new));
    if diff.absolute {
        let _ = writeln!(
            out,
            "Compared as raw values ({}).",
            diff.new.value_type.unit
        );
    } else {
        let _ = writeln!(
            out,
            "Compared as shares of each profile's total (--absolute compares raw values)."
        );
    }
    let _ = writeln!(
        out,
        "self: the function's own {0}; total: with what it calls. ~ marks a change within sampling noise (under {NOISE_SIGMAS} sigma).",
        what(diff)
    );

    if !diff.sites.is_empty() {
        let shown = limit(diff.sites.len());
        let _ = writeln!(
            out,
            "\nGoroutines by creation site, growth first ({shown} of {}):",
            diff.sites.len()
        );
        let _ = writeln!(out, "{:>8} {:>8} {:>8}  SITE", "BASE", "NEW", "CHANGE");
        for site in &diff.sites[..shown] {
            let _ = writeln!(
                out,
                "{:>8} {:>8} {:>+8}  {}",
                site.base,
                site.new,
                site.delta(),
                site.site
            );
        }
    }

    // Functions whose shares did not move at all are left out.
    let changed = diff
        .functions
        .iter()
        .take_while(|f| f.score() > 0.0)
        .count();
    let shown = limit(changed);
    let mut rows: Vec<&FunctionChange> = diff.functions[..shown].iter().collect();
    // Growth first, then shrinkage; each by how much.
    rows.sort_by_key(|f| !f.grew());
    let _ = writeln!(
        out,
        "\nFunctions that changed most, growth first ({shown} of {changed} that changed; {} in all):",
        diff.functions.len()
    );
    let _ = writeln!(
        out,
        "{:>10} {:>10} {:>10} {:>8}  {:>10} {:>10} {:>10}  FUNCTION",
        "SELF BASE", "SELF NEW", "CHANGE", "REL", "TOTAL BASE", "TOTAL NEW", "CHANGE"
    );
    for f in rows {
        let _ = writeln!(
            out,
            "{:>10} {:>10} {:>10} {:>8}  {:>10} {:>10} {:>10}  {}",
            value(diff, f.own.base),
            value(diff, f.own.new),
            delta(diff, &f.own),
            relative(&f.own),
            value(diff, f.total.base),
            value(diff, f.total.new),
            delta(diff, &f.total),
            f.name
        );
    }
    for (title, stacks) in [
        ("Stacks only in new", &diff.appeared),
        ("Stacks only in base", &diff.vanished),
    ] {
        if stacks.is_empty() {
            continue;
        }
        let shown = limit(stacks.len());
        let _ = writeln!(out, "\n{title} ({shown} of {}), leaf first:", stacks.len());
        for stack in &stacks[..shown] {
            let _ = writeln!(out, "{:>10}  {}", value(diff, stack.value), short(stack));
        }
    }
    out
}

/// What one side is.
fn side(side: &Side) -> String {
    let unit = &side.value_type.unit;
    let mut text = format!(
        "{} ({}, {}",
        side.origin,
        side.format.name(),
        side.value_type
    );
    if side.kind != crate::model::LoadedKind::Unknown {
        let _ = write!(text, ", a {} profile", side.kind.name());
    }
    if side.total <= 0.0 {
        let _ = write!(text, "; empty: every value is 0");
    } else {
        let _ = write!(text, "; total {}", raw(side.total, unit));
    }
    if side.events > 0.0 && side.events != side.total {
        let _ = write!(text, " in {} events", side.events);
    }
    text.push(')');
    text
}

fn what(diff: &Diff) -> &'static str {
    if diff.absolute { "value" } else { "share" }
}

fn value(diff: &Diff, v: f64) -> String {
    if diff.absolute {
        raw(v, &diff.new.value_type.unit)
    } else {
        format!("{v:.1}%")
    }
}

fn delta(diff: &Diff, c: &Change) -> String {
    let noise = if c.beyond_noise() { "" } else { "~" };
    let d = c.delta();
    if diff.absolute {
        let sign = if d >= 0.0 { "+" } else { "-" };
        format!("{noise}{sign}{}", raw(d.abs(), &diff.new.value_type.unit))
    } else {
        format!("{noise}{d:+.1}pp")
    }
}

fn relative(c: &Change) -> String {
    match c.relative() {
        Some(r) => format!("{r:+.0}%"),
        None if c.new > 0.0 => "new".to_owned(),
        None => String::new(),
    }
}

/// A raw value in its unit, humanized for time and bytes.
fn raw(v: f64, unit: &str) -> String {
    match unit {
        "nanoseconds" => {
            let s = v / 1e9;
            if s >= 1.0 {
                format!("{s:.2}s")
            } else if s >= 1e-3 {
                format!("{:.2}ms", s * 1e3)
            } else {
                format!("{:.1}us", s * 1e6)
            }
        }
        "bytes" => {
            let mib = v / (1u64 << 20) as f64;
            if mib >= 1.0 {
                format!("{mib:.1}MiB")
            } else {
                format!("{:.1}KiB", v / 1024.0)
            }
        }
        _ => format!("{}", v.round()),
    }
}

/// A stack leaf first: `leaf <- caller <- ...`.
fn short(stack: &StackChange) -> String {
    let mut names: Vec<&str> = stack
        .frames
        .iter()
        .rev()
        .take(STACK_FRAMES)
        .map(|f| &**f)
        .collect();
    if stack.frames.len() > STACK_FRAMES {
        names.push("...");
    }
    names.join(" <- ")
}

/// The comparison as JSON, every function whose share or value changed
/// (the `top` that changed most; 0: all).
pub fn json(diff: &Diff, top: usize, gates: &[(String, Option<String>)]) -> Value {
    let limit = |n: usize| if top == 0 { n } else { n.min(top) };
    let change = |c: &Change| {
        json!({
            "base": round(c.base),
            "new": round(c.new),
            "change": round(c.delta()),
            "relative_percent": c.relative().map(round),
            "sigmas": c.sigmas.filter(|s| s.is_finite()).map(round),
            "beyond_noise": c.beyond_noise(),
        })
    };
    let side = |s: &Side| {
        json!({
            "file": s.origin,
            "format": s.format.name(),
            "kind": s.kind.name(),
            "sample_type": s.value_type.name,
            "unit": s.value_type.unit,
            "total": round(s.total),
            "events": round(s.events),
        })
    };
    let stacks = |list: &[StackChange]| {
        list[..limit(list.len())]
            .iter()
            .map(|s| json!({ "stack": s.frames.iter().map(|f| &**f).collect::<Vec<_>>(), "value": round(s.value) }))
            .collect::<Vec<_>>()
    };
    json!({
        "base": side(&diff.base),
        "new": side(&diff.new),
        "compared_as": if diff.absolute { "raw values" } else { "percent of total" },
        "unit": diff.unit(),
        "functions": diff.functions[..limit(diff.functions.len())]
            .iter()
            .map(|f| json!({ "name": &*f.name, "self": change(&f.own), "total": change(&f.total) }))
            .collect::<Vec<_>>(),
        "functions_in_all": diff.functions.len(),
        "appeared": stacks(&diff.appeared),
        "vanished": stacks(&diff.vanished),
        "goroutine_sites": diff.sites[..limit(diff.sites.len())]
            .iter()
            .map(|s| json!({ "site": &*s.site, "base": s.base, "new": s.new, "change": s.delta() }))
            .collect::<Vec<_>>(),
        "gates": gates
            .iter()
            .map(|(gate, tripped)| json!({ "gate": gate, "tripped": tripped.is_some(), "why": tripped }))
            .collect::<Vec<_>>(),
    })
}

/// Rounds for output: stable text in golden files.
fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Writes a differential flamegraph: inferno's differential mode over the
/// two profiles' folded stacks (the base scaled to the new total when
/// comparing shares), drawn as the new profile, red where a frame grew and
/// blue where it shrank.
pub fn svg(diff: &Diff, out: &mut impl Write) -> std::io::Result<()> {
    let folded = |pick: fn(&super::diff::StackPair) -> f64| {
        let mut text = String::new();
        for stack in &diff.stacks {
            let v = pick(stack).round();
            if v > 0.0 && !stack.frames.is_empty() {
                let names: Vec<String> = stack.frames.iter().map(|f| f.replace(';', ":")).collect();
                let _ = writeln!(text, "{} {v}", names.join(";"));
            }
        }
        text
    };
    let (before, after) = (folded(|s| s.base), folded(|s| s.new));
    let mut lines = Vec::new();
    let options = differential::Options {
        normalize: !diff.absolute,
        strip_hex: false,
    };
    differential::from_readers(options, before.as_bytes(), after.as_bytes(), &mut lines)?;
    let lines = String::from_utf8_lossy(&lines);
    let mut opts = flamegraph::Options::default();
    opts.title = "Differential flamegraph".to_owned();
    opts.subtitle = Some(format!(
        "{} against {}: widths are the new profile; red grew, blue shrank{}",
        diff.new.origin,
        diff.base.origin,
        if diff.absolute {
            ""
        } else {
            " (base scaled to the new total)"
        }
    ));
    opts.count_name = diff.new.value_type.unit.clone();
    opts.deterministic = true;
    flamegraph::from_lines(&mut opts, lines.lines(), out)
        .map_err(|err| std::io::Error::other(err.to_string()))
}
