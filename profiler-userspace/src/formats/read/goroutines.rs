//! Go's goroutine dumps read back: the text of
//! `/debug/pprof/goroutine?debug=2` (one block per goroutine, with the
//! `created by` line that names its creation site), as Go writes it and as
//! `profiler dump` prints it after the threads, and of `?debug=1` (stacks
//! counted). Each goroutine counts 1; arguments are dropped from the
//! function names so that dumps of two runs line up.

use std::{collections::HashMap, rc::Rc};

use anyhow::bail;

use crate::model::{LoadedFormat, LoadedProfile, LoadedStack, ValueType};

/// Whether the text is Go's `debug=1` goroutine profile.
pub fn is_counts(text: &str) -> bool {
    text.trim_start().starts_with("goroutine profile: total ")
}

/// Whether the text holds a `debug=2` goroutine dump (perhaps after the
/// threads of a `profiler dump`).
pub fn is_dump(text: &str) -> bool {
    text.lines().any(|l| header(l).is_some())
        || text.starts_with("PID ") && text.lines().next().is_some_and(|l| l.ends_with("threads"))
}

/// The goid of a goroutine's header line, `goroutine 18 [chan receive]:`.
fn header(line: &str) -> Option<u64> {
    let rest = line.strip_prefix("goroutine ")?;
    let (goid, rest) = rest.split_once(' ')?;
    (rest.ends_with("]:") && rest.contains('[')).then_some(())?;
    goid.parse().ok()
}

/// A goroutine's frames (leaf first while read) and creation site.
type Goroutine = (Vec<Rc<str>>, Option<Rc<str>>);

/// Collects stacks and sums identical ones.
#[derive(Default)]
struct Stacks {
    names: HashMap<String, Rc<str>>,
    index: HashMap<Goroutine, usize>,
    stacks: Vec<LoadedStack>,
}

impl Stacks {
    fn name(&mut self, name: &str) -> Rc<str> {
        if let Some(n) = self.names.get(name) {
            return n.clone();
        }
        let n: Rc<str> = Rc::from(name);
        self.names.insert(name.to_owned(), n.clone());
        n
    }

    /// Adds `count` goroutines on `leaf_first`, created at `site`.
    fn add(&mut self, mut leaf_first: Vec<Rc<str>>, site: Option<Rc<str>>, count: i64) {
        leaf_first.reverse();
        let key = (leaf_first, site);
        match self.index.get(&key) {
            Some(&i) => self.stacks[i].values[0] = self.stacks[i].values[0].saturating_add(count),
            None => {
                self.index.insert(key.clone(), self.stacks.len());
                self.stacks.push(LoadedStack {
                    frames: key.0,
                    values: vec![count],
                    site: key.1,
                });
            }
        }
    }

    fn profile(self, origin: &str, format: LoadedFormat) -> LoadedProfile {
        LoadedProfile {
            origin: origin.to_owned(),
            format,
            sample_types: vec![ValueType::new("goroutine", "count")],
            default_type: 0,
            stacks: self.stacks,
        }
    }
}

/// Reads a `debug=2` dump.
pub fn parse_dump(text: &str, origin: &str) -> anyhow::Result<LoadedProfile> {
    let mut stacks = Stacks::default();
    let mut current: Option<Goroutine> = None;
    for line in text.lines() {
        if header(line).is_some() {
            if let Some((frames, site)) = current.take() {
                stacks.add(frames, site, 1);
            }
            current = Some((Vec::new(), None));
            continue;
        }
        let Some((frames, site)) = current.as_mut() else {
            continue;
        };
        if line.trim().is_empty() {
            if let Some((frames, site)) = current.take() {
                stacks.add(frames, site, 1);
            }
        } else if let Some(creator) = line.strip_prefix("created by ") {
            let function = creator.split(" in goroutine ").next().unwrap_or(creator);
            *site = Some(stacks.name(function.trim()));
        } else if !line.starts_with('\t') && !line.starts_with("...") && !line.starts_with('[') {
            let name = without_arguments(line.trim());
            let name = stacks.name(name);
            frames.push(name);
        }
    }
    if let Some((frames, site)) = current.take() {
        stacks.add(frames, site, 1);
    }
    if stacks.stacks.is_empty() {
        bail!(
            "{origin} holds no goroutines: a thread dump of a program that is not Go? diff compares goroutine dumps of Go programs, or profiles"
        );
    }
    Ok(stacks.profile(origin, LoadedFormat::GoroutineDump))
}

/// Reads a `debug=1` goroutine profile: `N @ 0x..` lines, each followed
/// by `#\t0x..\tfunction+0x..\tfile:line` frames, leaf first.
pub fn parse_counts(text: &str, origin: &str) -> anyhow::Result<LoadedProfile> {
    let mut stacks = Stacks::default();
    let mut current: Option<(Vec<Rc<str>>, i64)> = None;
    for (index, line) in text.lines().enumerate().skip(1) {
        if let Some((count, _)) = line.split_once(" @ ") {
            if let Some((frames, count)) = current.take() {
                stacks.add(frames, None, count);
            }
            // Never negative: no value of a profile is (`LoadedStack`).
            let count = count
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "{origin}: line {}: {:?} is not a goroutine count",
                        index + 1,
                        count.trim()
                    )
                })?;
            current = Some((Vec::new(), count));
        } else if let Some(frame) = line.strip_prefix("#\t") {
            let Some((frames, _)) = current.as_mut() else {
                bail!("{origin}: line {}: a frame before any stack", index + 1);
            };
            let function = frame.split('\t').nth(1).unwrap_or("");
            let function = function
                .rsplit_once("+0x")
                .map_or(function, |(name, _)| name);
            if !function.is_empty() {
                let name = stacks.name(function);
                frames.push(name);
            }
        }
    }
    if let Some((frames, count)) = current.take() {
        stacks.add(frames, None, count);
    }
    if stacks.stacks.is_empty() {
        bail!("{origin}: the goroutine profile holds no stacks");
    }
    Ok(stacks.profile(origin, LoadedFormat::GoroutineCounts))
}

/// A frame line's function without its arguments: `main.(*T).run(0xc0,
/// {0x1, 0x2})` is `main.(*T).run`.
fn without_arguments(line: &str) -> &str {
    if !line.ends_with(')') {
        return line;
    }
    let mut depth = 0usize;
    for (at, c) in line.char_indices().rev() {
        match c {
            ')' => depth += 1,
            '(' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return &line[..at];
                }
            }
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "goroutine 1 [running]:
main.main()
\t/x/main.go:10 +0x1d

goroutine 18 [chan receive, 2 minutes]:
main.leakOne.func1()
\t/x/leak.go:40 +0x25
created by main.leakOne in goroutine 1
\t/x/leak.go:39 +0x6f

goroutine 19 [chan receive]:
main.leakOne.func1()
\t/x/leak.go:40 +0x25
created by main.leakOne
\t/x/leak.go:39 +0x6f

goroutine 20 [select]:
main.(*T).run(0xc000010000, {0x1, 0x2})
\t/x/t.go:5 +0x1
...additional frames elided...
created by main.start in goroutine 1
\t/x/t.go:3 +0x1
";

    #[test]
    fn reads_goroutines_by_stack_and_site() {
        let p = parse_dump(DUMP, "d").ok();
        let stacks = p.map(|p| p.stacks).unwrap_or_default();
        assert_eq!(stacks.len(), 3);
        let leak = stacks
            .iter()
            .find(|s| s.site.as_deref() == Some("main.leakOne"));
        assert_eq!(leak.map(|s| s.values[0]), Some(2));
        assert!(stacks.iter().any(|s| &*s.frames[0] == "main.(*T).run"));
        assert!(
            stacks
                .iter()
                .any(|s| s.site.is_none() && &*s.frames[0] == "main.main")
        );
    }

    #[test]
    fn reads_debug1() {
        let text = "goroutine profile: total 3
2 @ 0x1 0x2
#\t0x1\tmain.leak.func1+0x24\t/x/leak.go:40
#\t0x2\truntime.goexit+0x1\t/go/asm.s:1

1 @ 0x3
# labels: {\"a\":\"b\"}
#\t0x3\tmain.main+0x10\t/x/main.go:3
";
        assert!(is_counts(text));
        let p = parse_counts(text, "c").ok();
        let stacks = p.map(|p| p.stacks).unwrap_or_default();
        assert_eq!(stacks[0].values, [2]);
        assert_eq!(&*stacks[0].frames[0], "runtime.goexit");
        assert_eq!(&*stacks[0].frames[1], "main.leak.func1");
        let bad = parse_counts("goroutine profile: total 1\nx @ 0x1\n", "c");
        assert!(bad.is_err_and(|e| e.to_string().contains("line 2")));
    }
}
