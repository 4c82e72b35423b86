//! The gates a comparison is held to, for CI: `--fail-on
//! 'total:FUNC>+5pp'`, `'self:*>+10%'`, `'goroutines:SITE>+100'` and
//! `--max-regression 15%`. A gate trips when any function (or creation
//! site) its glob matches grew by more than its bound, and, for functions,
//! by more than sampling noise.

use anyhow::bail;
use wildmatch::WildMatch;

use super::diff::{Change, Diff, FunctionChange, SiteChange};

/// What a gate measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A function's own (leaf) share or value.
    Own,
    /// With everything it calls.
    Total,
    /// Live goroutines per creation site.
    Goroutines,
}

/// How much growth a gate allows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// Percentage points of share (`5pp`).
    Points(f64),
    /// Percent of the base (`10%`).
    Percent(f64),
    /// Raw units: goroutines, or with `--absolute` the profile's unit.
    Raw(f64),
}

/// One gate.
#[derive(Debug, Clone)]
pub struct Gate {
    /// As the user wrote it.
    pub text: String,
    pub scope: Scope,
    pub pattern: String,
    pub bound: Bound,
}

/// The syntax, for error messages.
const SYNTAX: &str = "a gate is SCOPE:PATTERN>+AMOUNT, with SCOPE self, total or goroutines, PATTERN a glob on the function (or creation site) name, and AMOUNT in points of share (5pp), percent (10%) or a plain number (goroutines; raw values with --absolute), e.g. 'total:main.handle*>+5pp'";

impl Gate {
    /// Parses `--fail-on` text.
    pub fn parse(text: &str) -> anyhow::Result<Gate> {
        let Some((scope, rest)) = text.split_once(':') else {
            bail!("--fail-on {text:?}: no scope; {SYNTAX}");
        };
        let scope = match scope.trim() {
            "self" => Scope::Own,
            "total" => Scope::Total,
            "goroutines" | "goroutine" => Scope::Goroutines,
            other => bail!("--fail-on {text:?}: unknown scope {other:?}; {SYNTAX}"),
        };
        let Some((pattern, amount)) = rest.rsplit_once('>') else {
            if rest.contains('<') {
                bail!(
                    "--fail-on {text:?}: gates trip on growth, with '>'; to fail on a drop, swap BASE and NEW"
                );
            }
            bail!("--fail-on {text:?}: no '>' bound; {SYNTAX}");
        };
        let pattern = pattern.trim();
        if pattern.is_empty() {
            bail!("--fail-on {text:?}: no pattern (use * for every function); {SYNTAX}");
        }
        let bound = parse_bound(amount.trim()).ok_or_else(|| {
            anyhow::anyhow!(
                "--fail-on {text:?}: cannot read the amount {:?}; {SYNTAX}",
                amount.trim()
            )
        })?;
        if scope == Scope::Goroutines && matches!(bound, Bound::Points(_)) {
            bail!(
                "--fail-on {text:?}: goroutine gates count goroutines (+100) or percent (+10%), not points"
            );
        }
        Ok(Gate {
            text: text.to_owned(),
            scope,
            pattern: pattern.to_owned(),
            bound,
        })
    }

    /// `--max-regression P%`: no function's own share (or value) may grow
    /// by more than P percent.
    pub fn max_regression(text: &str) -> anyhow::Result<Gate> {
        let percent = text
            .trim()
            .strip_suffix('%')
            .unwrap_or(text.trim())
            .trim_start_matches('+')
            .parse::<f64>()
            .ok()
            .filter(|p| p.is_finite() && *p >= 0.0)
            .ok_or_else(|| {
                anyhow::anyhow!("--max-regression {text:?}: give a percentage, such as 15%")
            })?;
        Ok(Gate {
            text: format!("--max-regression {percent}%"),
            scope: Scope::Own,
            pattern: "*".to_owned(),
            bound: Bound::Percent(percent),
        })
    }

    /// Whether the gate's amount suits the comparison: points compare
    /// shares, raw amounts raw values (`--absolute`).
    pub fn applies(&self, absolute: bool) -> anyhow::Result<()> {
        match self.bound {
            Bound::Points(_) if absolute => bail!(
                "gate {:?} is in points of share, but --absolute compares raw values; give percent or a raw amount",
                self.text
            ),
            Bound::Raw(_) if !absolute && self.scope != Scope::Goroutines => bail!(
                "gate {:?} has a raw amount, which needs --absolute; or give points of share (5pp) or percent (10%)",
                self.text
            ),
            _ => Ok(()),
        }
    }

    /// Checks the gate against a diff: `Ok(None)` when it holds,
    /// `Ok(Some(why))` when it trips, an error when it cannot apply.
    pub fn check(&self, diff: &Diff) -> anyhow::Result<Verdict> {
        let glob = WildMatch::new(&self.pattern);
        if self.scope == Scope::Goroutines {
            if diff.sites.is_empty() {
                bail!(
                    "gate {:?} counts goroutines, but {} and {} are {} profiles; give goroutine profiles or dumps",
                    self.text,
                    diff.base.origin,
                    diff.new.origin,
                    diff.new.kind.name()
                );
            }
            let matched: Vec<&SiteChange> = diff
                .sites
                .iter()
                .filter(|s| glob.matches(&s.site))
                .collect();
            let over: Vec<&SiteChange> = matched
                .iter()
                .copied()
                .filter(|s| match self.bound {
                    Bound::Raw(n) => s.delta() as f64 > n,
                    Bound::Percent(p) => exceeds_percent(s.base as f64, s.new as f64, p),
                    Bound::Points(_) => false,
                })
                .collect();
            return Ok(Verdict {
                matched: matched.len(),
                tripped: over.first().map(|s| {
                    format!(
                        "{}: {} goroutines, then {} ({:+}){}",
                        s.site,
                        s.base,
                        s.new,
                        s.delta(),
                        more(over.len(), "site")
                    )
                }),
            });
        }
        self.applies(diff.absolute)?;
        let change = |f: &FunctionChange| match self.scope {
            Scope::Own => f.own,
            _ => f.total,
        };
        let matched: Vec<&FunctionChange> = diff
            .functions
            .iter()
            .filter(|f| glob.matches(&f.name))
            .collect();
        let over: Vec<&FunctionChange> = matched
            .iter()
            .copied()
            .filter(|f| {
                let c = change(f);
                c.beyond_noise()
                    && match self.bound {
                        Bound::Points(n) | Bound::Raw(n) => c.delta() > n,
                        Bound::Percent(p) => exceeds_percent(c.base, c.new, p),
                    }
            })
            .collect();
        let what = if self.scope == Scope::Own {
            "self"
        } else {
            "total"
        };
        Ok(Verdict {
            matched: matched.len(),
            tripped: over.first().map(|f| {
                format!(
                    "{}: {what} {}{}",
                    f.name,
                    describe(&change(f), diff),
                    more(over.len(), "function")
                )
            }),
        })
    }
}

/// The outcome of one gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// How many functions or sites its pattern matched.
    pub matched: usize,
    /// What tripped it, the largest first.
    pub tripped: Option<String>,
}

fn exceeds_percent(base: f64, new: f64, percent: f64) -> bool {
    if base <= 0.0 {
        new > 0.0
    } else {
        (new / base - 1.0) * 100.0 > percent
    }
}

fn more(n: usize, what: &str) -> String {
    match n {
        0 | 1 => String::new(),
        2 => format!(", and 1 more {what}"),
        n => format!(", and {} more {what}s", n - 1),
    }
}

/// A change in words: `25.0% -> 40.1% (+15.1pp, +60.4%)`.
pub fn describe(change: &Change, diff: &Diff) -> String {
    let relative = change
        .relative()
        .map_or_else(|| "new".to_owned(), |r| format!("{r:+.1}%"));
    if diff.absolute {
        let unit = diff.unit();
        format!(
            "{} -> {} {unit} ({:+} {unit}, {relative})",
            change.base.round(),
            change.new.round(),
            change.delta().round()
        )
    } else {
        format!(
            "{:.1}% -> {:.1}% ({:+.1}pp, {relative})",
            change.base,
            change.new,
            change.delta()
        )
    }
}

fn parse_bound(amount: &str) -> Option<Bound> {
    let amount = amount.strip_prefix('+').unwrap_or(amount);
    let number = |s: &str| {
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
    };
    if let Some(n) = amount.strip_suffix("pp") {
        number(n).map(Bound::Points)
    } else if let Some(n) = amount.strip_suffix('%') {
        number(n).map(Bound::Percent)
    } else {
        number(amount).map(Bound::Raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gates_parse() {
        let g = Gate::parse("total:main.handle*>+5pp").ok();
        assert_eq!(g.as_ref().map(|g| g.scope), Some(Scope::Total));
        assert_eq!(g.as_ref().map(|g| g.pattern.as_str()), Some("main.handle*"));
        assert_eq!(g.map(|g| g.bound), Some(Bound::Points(5.0)));
        assert_eq!(
            Gate::parse("self:*>+10%").ok().map(|g| g.bound),
            Some(Bound::Percent(10.0))
        );
        assert_eq!(
            Gate::parse("goroutines:main.leak*>100")
                .ok()
                .map(|g| g.bound),
            Some(Bound::Raw(100.0))
        );
        let err = |t: &str| {
            Gate::parse(t)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(err("cpu:foo>1%").contains("unknown scope \"cpu\""));
        assert!(err("self:foo<1%").contains("swap BASE and NEW"));
        assert!(err("self:foo>lots").contains("cannot read the amount \"lots\""));
        assert!(err("self:>1%").contains("no pattern"));
        assert!(err("goroutines:x>5pp").contains("not points"));
        assert!(err("nothing").contains("no scope"));
        assert_eq!(
            Gate::max_regression("15%").ok().map(|g| g.bound),
            Some(Bound::Percent(15.0))
        );
        assert!(Gate::max_regression("fast").is_err());
    }
}
