//! What changed between two profiles of the same kind: each function's
//! self and total share (or raw value, `--absolute`), with how far the
//! change stands above sampling noise; the stacks that appeared and
//! vanished; and for goroutines, the live count per creation site.

use std::{
    collections::{HashMap, HashSet},
    rc::Rc,
};

use anyhow::bail;

use crate::model::{LoadedFormat, LoadedKind, LoadedProfile, LoadedStack, ValueType};

/// How the two profiles are compared.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// The sample type, as `go tool pprof -sample_index` takes it: a
    /// number or a name; `None` for each file's default.
    pub sample_index: Option<String>,
    /// Raw values instead of shares of each profile's total.
    pub absolute: bool,
}

/// A change below this many standard deviations of sampling noise is not
/// counted as one by the gates: a share measured from N samples varies by
/// about sqrt(p(1-p)/N) between two runs of the same program.
pub const NOISE_SIGMAS: f64 = 3.0;

/// The smallest value of a folded file from which its values are taken
/// for weights (nanoseconds, bytes) rather than counts of samples.
const WEIGHTED: i64 = 1000;

/// One of the two profiles, as compared.
#[derive(Debug, Clone)]
pub struct Side {
    pub origin: String,
    pub format: LoadedFormat,
    pub kind: LoadedKind,
    /// The sample type compared.
    pub value_type: ValueType,
    /// The sum of its values.
    pub total: f64,
    /// The events (samples, contentions, goroutines) the values sum, by
    /// which noise is judged.
    pub events: f64,
}

/// A measure in both profiles: a share in percent of each total, or a raw
/// value (`--absolute`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Change {
    pub base: f64,
    pub new: f64,
    /// How many standard deviations of sampling noise the change is;
    /// `None` when the events are not known.
    pub sigmas: Option<f64>,
}

impl Change {
    pub fn delta(&self) -> f64 {
        self.new - self.base
    }

    /// The change relative to the base, in percent; `None` when the base
    /// is zero.
    pub fn relative(&self) -> Option<f64> {
        (self.base > 0.0).then(|| (self.new / self.base - 1.0) * 100.0)
    }

    /// Whether the change stands above sampling noise.
    pub fn beyond_noise(&self) -> bool {
        self.sigmas.is_none_or(|s| s.abs() >= NOISE_SIGMAS)
    }
}

/// How a function changed.
#[derive(Debug, Clone)]
pub struct FunctionChange {
    pub name: Rc<str>,
    /// Its own time (as the leaf of stacks).
    pub own: Change,
    /// With everything it calls (on the stack anywhere, once per stack).
    pub total: Change,
}

impl FunctionChange {
    /// The larger of the two changes, by magnitude: what the table sorts by.
    pub fn score(&self) -> f64 {
        self.own.delta().abs().max(self.total.delta().abs())
    }

    /// Whether the larger of the two changes is growth.
    pub fn grew(&self) -> bool {
        if self.own.delta().abs() >= self.total.delta().abs() {
            self.own.delta() > 0.0
        } else {
            self.total.delta() > 0.0
        }
    }
}

/// A stack in one profile only.
#[derive(Debug, Clone)]
pub struct StackChange {
    /// Root first.
    pub frames: Vec<Rc<str>>,
    /// Its share, or raw value, in the profile that has it.
    pub value: f64,
}

/// The goroutines of one creation site in both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteChange {
    pub site: Rc<str>,
    pub base: i64,
    pub new: i64,
}

impl SiteChange {
    pub fn delta(&self) -> i64 {
        self.new - self.base
    }
}

/// What changed from `base` to `new`.
#[derive(Debug, Clone)]
pub struct Diff {
    pub base: Side,
    pub new: Side,
    pub absolute: bool,
    /// Every function of either, most changed first.
    pub functions: Vec<FunctionChange>,
    /// Stacks only `new` has, largest first.
    pub appeared: Vec<StackChange>,
    /// Stacks only `base` has, largest first.
    pub vanished: Vec<StackChange>,
    /// For goroutine profiles and dumps: per creation site, largest growth
    /// first.
    pub sites: Vec<SiteChange>,
    /// Every stack of either with its raw values in both, for the
    /// differential flamegraph.
    pub stacks: Vec<StackPair>,
}

/// A stack's raw values in both profiles.
#[derive(Debug, Clone)]
pub struct StackPair {
    /// Root first.
    pub frames: Vec<Rc<str>>,
    pub base: f64,
    pub new: f64,
}

impl Diff {
    /// The unit of the compared values, for display: `%` for shares.
    pub fn unit(&self) -> &str {
        if self.absolute {
            &self.new.value_type.unit
        } else {
            "%"
        }
    }
}

/// One profile's stacks, normalized and summed, with their event counts.
struct Summed {
    side: Side,
    /// value, events
    stacks: HashMap<Vec<Rc<str>>, (f64, f64)>,
    sites: HashMap<Rc<str>, i64>,
}

/// Compares `new` against `base`.
pub fn diff(
    base: &LoadedProfile,
    new: &LoadedProfile,
    options: &DiffOptions,
) -> anyhow::Result<Diff> {
    let (base_kind, new_kind) = (base.kind(), new.kind());
    if base_kind != new_kind && base_kind != LoadedKind::Unknown && new_kind != LoadedKind::Unknown
    {
        bail!(
            "{} is a {} profile and {} a {} profile: compare two profiles of the same kind",
            base.origin,
            base_kind.name(),
            new.origin,
            new_kind.name()
        );
    }
    let base_index = base
        .sample_index(options.sample_index.as_deref())
        .map_err(anyhow::Error::msg)?;
    let mut new_index = new
        .sample_index(options.sample_index.as_deref())
        .map_err(anyhow::Error::msg)?;
    // Two files of one kind may order their types differently: take the
    // type the base was compared by, when the new one has it.
    if options.sample_index.is_none()
        && let Some(same) = new
            .sample_types
            .iter()
            .position(|t| t.name == base.sample_types[base_index].name)
    {
        new_index = same;
    }
    let (bt, nt) = (&base.sample_types[base_index], &new.sample_types[new_index]);
    if options.absolute
        && bt.unit != nt.unit
        && base.format != LoadedFormat::Folded
        && new.format != LoadedFormat::Folded
    {
        bail!(
            "--absolute compares raw values, but {} counts {bt} and {} counts {nt}; choose one type for both with --sample-index, or compare shares (without --absolute)",
            base.origin,
            new.origin
        );
    }
    let mut base = summed(base, base_index);
    let mut new = summed(new, new_index);
    align_roots(&mut base, &new);
    align_roots(&mut new, &base);
    let absolute = options.absolute;
    // An empty profile (a mutex profile of a run without contention) has
    // no shares: everything in the other grew from, or shrank to, nothing.
    let measure = |value: f64, side: &Side| {
        if absolute {
            value
        } else if side.total > 0.0 {
            value / side.total * 100.0
        } else {
            0.0
        }
    };
    let change = |b: (f64, f64), n: (f64, f64)| Change {
        base: measure(b.0, &base.side),
        new: measure(n.0, &new.side),
        sigmas: sigmas(b.1, base.side.events, n.1, new.side.events, absolute),
    };

    let (base_fns, new_fns) = (functions(&base), functions(&new));
    let mut fns: Vec<FunctionChange> = either(&base_fns, &new_fns)
        .map(|name| {
            let b = base_fns.get(name).copied().unwrap_or_default();
            let n = new_fns.get(name).copied().unwrap_or_default();
            FunctionChange {
                name: name.clone(),
                own: change(b.own, n.own),
                total: change(b.total, n.total),
            }
        })
        .collect();
    fns.sort_by(|a, b| {
        b.score()
            .total_cmp(&a.score())
            .then_with(|| b.grew().cmp(&a.grew()))
            .then_with(|| a.name.cmp(&b.name))
    });

    let only = |of: &Summed, other: &Summed| {
        let mut stacks: Vec<StackChange> = of
            .stacks
            .iter()
            .filter(|(frames, (v, _))| {
                *v > 0.0 && other.stacks.get(*frames).is_none_or(|o| o.0 <= 0.0)
            })
            .map(|(frames, (v, _))| StackChange {
                frames: frames.clone(),
                value: measure(*v, &of.side),
            })
            .collect();
        stacks.sort_by(|a, b| {
            b.value
                .total_cmp(&a.value)
                .then_with(|| a.frames.cmp(&b.frames))
        });
        stacks
    };
    let appeared = only(&new, &base);
    let vanished = only(&base, &new);

    let mut sites: Vec<SiteChange> = either(&base.sites, &new.sites)
        .map(|site| SiteChange {
            site: site.clone(),
            base: base.sites.get(site).copied().unwrap_or(0),
            new: new.sites.get(site).copied().unwrap_or(0),
        })
        .collect();
    sites.sort_by(|a, b| {
        b.delta()
            .cmp(&a.delta())
            .then(b.new.cmp(&a.new))
            .then_with(|| a.site.cmp(&b.site))
    });
    let mut stacks: Vec<StackPair> = either(&base.stacks, &new.stacks)
        .map(|frames| StackPair {
            frames: frames.clone(),
            base: base.stacks.get(frames).map_or(0.0, |v| v.0),
            new: new.stacks.get(frames).map_or(0.0, |v| v.0),
        })
        .collect();
    stacks.sort_by(|a, b| a.frames.cmp(&b.frames));
    Ok(Diff {
        stacks,
        base: base.side,
        new: new.side,
        absolute,
        functions: fns,
        appeared,
        vanished,
        sites,
    })
}

/// The keys of either map, each once.
fn either<'m, K: Eq + std::hash::Hash, V>(
    a: &'m HashMap<K, V>,
    b: &'m HashMap<K, V>,
) -> impl Iterator<Item = &'m K> {
    a.keys().chain(b.keys().filter(|k| !a.contains_key(*k)))
}

/// Drops `of`'s root frame when every stack of it starts with one frame
/// that `other` never starts with: folded stacks start with the process
/// (ours, perf's), pprof keeps it in labels, and the two should line up.
fn align_roots(of: &mut Summed, other: &Summed) {
    let Some(root) = of.stacks.keys().next().and_then(|f| f.first()).cloned() else {
        return;
    };
    if !of
        .stacks
        .keys()
        .all(|f| f.first() == Some(&root) && f.len() > 1)
        || other.stacks.keys().any(|f| f.first() == Some(&root))
    {
        return;
    }
    let stacks = std::mem::take(&mut of.stacks);
    for (frames, (value, events)) in stacks {
        let entry = of.stacks.entry(frames[1..].to_vec()).or_default();
        entry.0 += value;
        entry.1 += events;
    }
}

/// How many standard deviations of sampling noise separate `b` of
/// `b_total` events from `n` of `n_total`. For shares, the two are
/// binomial proportions; for raw values, Poisson counts.
fn sigmas(b: f64, b_total: f64, n: f64, n_total: f64, absolute: bool) -> Option<f64> {
    if b_total <= 0.0 || n_total <= 0.0 {
        return None;
    }
    let (delta, spread) = if absolute {
        (n - b, (n + b).sqrt())
    } else {
        let p = (b + n) / (b_total + n_total);
        (
            n / n_total - b / b_total,
            (p * (1.0 - p) * (1.0 / b_total + 1.0 / n_total)).sqrt(),
        )
    };
    if spread > 0.0 {
        Some(delta / spread)
    } else if delta == 0.0 {
        Some(0.0)
    } else {
        Some(f64::INFINITY.copysign(delta))
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct FunctionSums {
    /// value, events
    own: (f64, f64),
    total: (f64, f64),
}

fn functions(profile: &Summed) -> HashMap<Rc<str>, FunctionSums> {
    let mut sums: HashMap<Rc<str>, FunctionSums> = HashMap::new();
    for (frames, &(value, events)) in &profile.stacks {
        let mut seen: HashSet<&Rc<str>> = HashSet::with_capacity(frames.len());
        for frame in frames {
            if seen.insert(frame) {
                let s = sums.entry(frame.clone()).or_default();
                s.total.0 += value;
                s.total.1 += events;
            }
        }
        if let Some(leaf) = frames.last() {
            let s = sums.entry(leaf.clone()).or_default();
            s.own.0 += value;
            s.own.1 += events;
        }
    }
    sums
}

/// A profile's stacks by their normalized frames, with the values of the
/// chosen type and the events they sum.
fn summed(profile: &LoadedProfile, index: usize) -> Summed {
    let count_index = profile.count_index(index);
    // Folded stacks may weigh each sample (perf's periods in nanoseconds):
    // when even the smallest value is large, it is taken for one sample's
    // weight; small values are taken for counts.
    let smallest = profile
        .stacks
        .iter()
        .filter_map(|s| s.values.get(index).copied())
        .filter(|v| *v > 0)
        .min()
        .unwrap_or(1);
    let weight = match profile.format {
        LoadedFormat::Folded if smallest >= WEIGHTED => smallest as f64,
        _ => 1.0,
    };
    let mut stacks: HashMap<Vec<Rc<str>>, (f64, f64)> = HashMap::new();
    let mut sites: HashMap<Rc<str>, i64> = HashMap::new();
    let (mut total, mut events) = (0.0, 0.0);
    let goroutines = profile.kind() == LoadedKind::Goroutines;
    for stack in &profile.stacks {
        let value = stack.values.get(index).copied().unwrap_or(0) as f64;
        let count = match count_index {
            Some(i) => (stack.values.get(i).copied().unwrap_or(0) as f64 / weight).round(),
            None => 0.0,
        };
        total += value;
        events += count;
        let entry = stacks
            .entry(normalized(&stack.frames, goroutines))
            .or_default();
        entry.0 += value;
        entry.1 += count;
        if goroutines && let Some(site) = site_of(stack) {
            *sites.entry(site).or_default() += stack.values.get(index).copied().unwrap_or(0);
        }
    }
    Summed {
        side: Side {
            origin: profile.origin.clone(),
            format: profile.format,
            kind: profile.kind(),
            value_type: profile.sample_types[index].clone(),
            total,
            // Without a type that counts events, noise is not judged.
            events: if count_index.is_some() { events } else { 0.0 },
        },
        stacks,
        sites,
    }
}

/// Where the goroutines of a stack were created: the dump's `created by`
/// function, else (in a goroutine profile, which does not say) the
/// function the goroutine started in.
fn site_of(stack: &LoadedStack) -> Option<Rc<str>> {
    if let Some(site) = &stack.site {
        return Some(site.clone());
    }
    let start = stack.frames.iter().find(|f| &***f != "runtime.goexit")?;
    if &**start == "main.main" || &**start == "runtime.main" {
        return Some(Rc::from("main goroutine"));
    }
    Some(start.clone())
}

/// Frames as two runs of one program share them: a process or thread id
/// in the first two frames (`app (4242)`, `app-4242`, `app-4242/4243`,
/// as we and inferno's collapse tools write them) is dropped; so is
/// `runtime.goexit`, the bottom of every goroutine's stack, which Go's CPU
/// profiles leave out and our recordings and Go's goroutine profiles keep.
/// Goroutine stacks keep only the frames Go's text dumps show (not the
/// runtime's unexported functions), so that a dump and a goroutine profile
/// line up.
fn normalized(frames: &[Rc<str>], goroutines: bool) -> Vec<Rc<str>> {
    frames
        .iter()
        .enumerate()
        .filter(|(_, frame)| &***frame != "runtime.goexit")
        .filter(|(_, frame)| !goroutines || !runtime_internal(frame))
        .map(|(depth, frame)| match depth {
            0 | 1 => without_id(frame).map_or_else(|| frame.clone(), Rc::from),
            _ => frame.clone(),
        })
        .collect()
}

/// A Go runtime function Go's goroutine dumps leave out: unexported, in
/// package runtime (`runtime.gopark`, `runtime.chanrecv`).
fn runtime_internal(frame: &str) -> bool {
    frame
        .strip_prefix("runtime.")
        .is_some_and(|rest| rest.starts_with(|c: char| c.is_lowercase()))
}

fn without_id(frame: &str) -> Option<&str> {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some(rest) = frame.strip_suffix(')')
        && let Some((name, id)) = rest.rsplit_once(" (")
        && digits(id)
    {
        return Some(name);
    }
    let (name, id) = frame.rsplit_once('-')?;
    let id = id
        .split_once('/')
        .map_or(id, |(pid, tid)| if digits(tid) { pid } else { "" });
    (digits(id) || id == "exited")
        .then_some(name)
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::read::folded;

    fn load(text: &str, origin: &str) -> LoadedProfile {
        match folded::parse(text, origin) {
            Ok(p) => p,
            Err(err) => panic!("{err:#}"),
        }
    }

    #[test]
    fn shares_name_the_function_that_grew_first() {
        let base = load("app-1;main;hot_one 250\napp-1;main;hot_three 750\n", "a");
        let new = load("app-2;main;hot_one 400\napp-2;main;hot_three 600\n", "b");
        let d = diff(&base, &new, &DiffOptions::default()).ok();
        let Some(d) = d else { panic!("no diff") };
        assert_eq!(&*d.functions[0].name, "hot_one");
        let f = &d.functions[0];
        assert!((f.own.base - 25.0).abs() < 1e-9 && (f.own.new - 40.0).abs() < 1e-9);
        assert_eq!(f.own.relative().map(f64::round), Some(60.0));
        assert!(f.own.beyond_noise(), "{:?}", f.own.sigmas);
        // The thread frames line up: `app` is one function in both.
        let app = d.functions.iter().find(|f| &*f.name == "app");
        assert_eq!(app.map(|f| f.total.delta()), Some(0.0));
        assert!(d.appeared.is_empty() && d.vanished.is_empty());
    }

    #[test]
    fn small_changes_of_few_samples_are_noise() {
        let base = load("main;a 20\nmain;b 80\n", "a");
        let new = load("main;a 26\nmain;b 74\n", "b");
        let d = diff(&base, &new, &DiffOptions::default()).ok();
        let a = d
            .as_ref()
            .and_then(|d| d.functions.iter().find(|f| &*f.name == "a"));
        assert!(a.is_some_and(|a| !a.own.beyond_noise()));
    }

    #[test]
    fn ids_are_dropped_from_process_and_thread_frames() {
        assert_eq!(without_id("app (4242)"), Some("app"));
        assert_eq!(without_id("worker-17"), Some("worker"));
        assert_eq!(without_id("worker-17/18"), Some("worker"));
        assert_eq!(without_id("worker-exited"), Some("worker"));
        assert_eq!(without_id("main"), None);
        assert_eq!(without_id("a-b"), None);
        assert_eq!(without_id("-12"), None);
    }
}
