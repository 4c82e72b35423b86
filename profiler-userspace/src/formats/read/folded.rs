//! Folded ("collapsed") stacks read back: `root;...;leaf COUNT` per line,
//! as we, inferno's collapse tools, flamegraph.pl's stackcollapse scripts
//! and bcc's `-f` tools write them. The suffixes flamegraph tools colour by
//! become the names our pprof gives: a kernel frame `f_[k]` is `f
//! [kernel]`, an inlined `f_[i]` is `f`; identical stacks are summed.

use std::{collections::HashMap, rc::Rc};

use anyhow::bail;

use crate::model::{LoadedFormat, LoadedProfile, LoadedStack, ValueType};

/// The longest line read: a stack of thousands of long C++ names fits.
pub const MAX_LINE: usize = 1 << 20;

/// Reads folded stacks; `origin` names the file in errors.
pub fn parse(text: &str, origin: &str) -> anyhow::Result<LoadedProfile> {
    let mut names: HashMap<&str, Rc<str>> = HashMap::new();
    let mut by_stack: HashMap<Vec<Rc<str>>, i64> = HashMap::new();
    let mut order: Vec<Vec<Rc<str>>> = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.len() > MAX_LINE {
            bail!(
                "{origin}: line {number} is {} bytes long, more than the {} MiB a folded line may be; is this a folded-stacks file?",
                line.len(),
                MAX_LINE >> 20
            );
        }
        let line = line.trim_end();
        if line.is_empty() {
            continue;
        }
        let Some((stack, count)) = line.rsplit_once([' ', '\t']) else {
            bail!(
                "{origin}: line {number} has no count; a folded line is `root;caller;leaf COUNT` ({})",
                excerpt(line)
            );
        };
        let count = parse_count(count).map_err(|why| {
            anyhow::anyhow!(
                "{origin}: line {number}: the count {} {why}",
                excerpt(count)
            )
        })?;
        let stack = stack.trim_end();
        if stack.is_empty() {
            bail!("{origin}: line {number} has a count but no stack");
        }
        let frames: Vec<Rc<str>> = stack
            .split(';')
            .filter(|f| !f.is_empty())
            .map(|f| {
                names
                    .entry(f)
                    .or_insert_with(|| match f.strip_suffix("_[k]") {
                        Some(kernel) => Rc::from(format!("{kernel} [kernel]")),
                        None => Rc::from(strip_suffix(f)),
                    })
                    .clone()
            })
            .collect();
        match by_stack.get_mut(&frames) {
            Some(total) => {
                *total = total.checked_add(count).ok_or_else(|| {
                    anyhow::anyhow!("{origin}: line {number}: the counts of one stack overflow")
                })?;
            }
            None => {
                order.push(frames.clone());
                by_stack.insert(frames, count);
            }
        }
    }
    if order.is_empty() {
        bail!("{origin} holds no stacks");
    }
    let stacks = order
        .into_iter()
        .map(|frames| {
            let value = by_stack.get(&frames).copied().unwrap_or(0);
            LoadedStack {
                frames,
                values: vec![value],
                site: None,
            }
        })
        .collect();
    Ok(LoadedProfile {
        origin: origin.to_owned(),
        format: LoadedFormat::Folded,
        sample_types: vec![ValueType::new("value", "count")],
        default_type: 0,
        stacks,
    })
}

fn parse_count(text: &str) -> Result<i64, &'static str> {
    if text.starts_with('-') && text.len() > 1 {
        return Err("is negative");
    }
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err("is not a whole number");
    }
    text.parse::<i64>().map_err(|_| "is too large")
}

/// The name without flamegraph's colouring suffix (inlined, JIT, waker).
fn strip_suffix(frame: &str) -> &str {
    for suffix in ["_[i]", "_[j]", "_[w]"] {
        if let Some(name) = frame.strip_suffix(suffix) {
            return name;
        }
    }
    frame
}

/// The start of a long text, for an error message.
fn excerpt(text: &str) -> String {
    let cut: String = text.chars().take(60).collect();
    if cut.len() < text.len() {
        format!("{cut:?}...")
    } else {
        format!("{cut:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "f.folded")
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    }

    #[test]
    fn reads_and_sums() {
        let p = parse(
            "app;main;work_[i] 3\napp;main;work 4\n\napp;main;other 2\napp;main;read_[k] 1\n",
            "f",
        );
        let p = p.ok();
        let stacks = p.map(|p| p.stacks).unwrap_or_default();
        assert_eq!(stacks.len(), 3);
        assert_eq!(stacks[0].values, [7]);
        assert_eq!(&*stacks[0].frames[2], "work");
        assert_eq!(&*stacks[2].frames[2], "read [kernel]");
    }

    #[test]
    fn names_with_spaces_keep_them() {
        let p = parse("a;operator new(unsigned long) 5\n", "f").ok();
        let s = p.map(|p| p.stacks).unwrap_or_default();
        assert_eq!(&*s[0].frames[1], "operator new(unsigned long)");
    }

    #[test]
    fn malformed_lines_are_named() {
        assert!(err("a;b 1\nnocount\n").contains("f.folded: line 2 has no count"));
        assert!(err("a;b x1\n").contains("line 1: the count \"x1\" is not a whole number"));
        assert!(err("a;b -4\n").contains("line 1: the count \"-4\" is negative"));
        assert!(err("a;b 99999999999999999999\n").contains("is too large"));
        assert!(err(" 5\n").contains("line 1 has a count but no stack"));
        let huge = format!("{} 1\n", "f;".repeat(MAX_LINE));
        assert!(err(&huge).contains("line 1 is"));
        assert!(err("\n\n").contains("holds no stacks"));
    }
}
