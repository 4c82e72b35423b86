//! The sampling rates of the Go runtime's own profilers in a running
//! program, read and written through `/proc/PID/mem`, Go 1.19 to 1.27,
//! stripped or not: for turning Go's own heap, mutex and block sampling on
//! only when asked, and off again.
//!
//! | variable | type | meaning | Go's own setter |
//! |---|---|---|---|
//! | `runtime.MemProfileRate` | `int` | one heap sample per this many bytes allocated (1: every allocation, 0: none; default 512 KiB, 0 when the program does not link runtime/pprof) | assignment |
//! | `runtime.mutexprofilerate` | `uint64` | one in this many contended unlocks sampled (1: all, 0: none; default 0) | `SetMutexProfileFraction` |
//! | `runtime.blockprofilerate` | `uint64` | blocking events shorter than this many **CPU ticks** (RDTSC on amd64) are sampled in proportion, longer ones always (1: every event, 0: none; default 0) | `SetBlockProfileRate` (nanoseconds, converted to ticks; 1 kept as 1) |
//!
//! The same in every release from 1.19 to 1.27. Where each is found: see
//! [`super::mprof`].
//!
//! **Writing changes the target's behaviour.** The runtime reads these
//! variables on every sampled event, so a write takes effect at once: the
//! program then spends time and memory recording (a bucket per distinct
//! stack, never freed), its own `/debug/pprof` endpoints show the new
//! data, and the program's own idea of its rates changes (a program that
//! sets them itself may set them again over ours). A heap profile scales
//! every sample by the *current* `MemProfileRate` (Go's and
//! [`super::heap`]'s alike), so changing the rate of a program that already
//! samples skews the estimates of the samples taken at the old rate. An
//! 8-byte aligned write is one store in practice, but the kernel does not
//! promise it. Restore what was there ([`RatesGuard`]) as soon as the
//! profile is taken, on every exit path (the caller also restores on
//! Ctrl-C/SIGTERM).

use std::{fs::File, io, os::unix::fs::FileExt as _, rc::Rc};

use super::{
    binary::GoBinary,
    mprof::{self, ProfilingVariables},
    offsets,
};

/// The three rates, as the runtime stores them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Rates {
    /// `runtime.MemProfileRate`: bytes per heap sample (1: every
    /// allocation; 0: off).
    pub mem: i64,
    /// `runtime.mutexprofilerate`: 1 in N contention events (0: off).
    pub mutex: u64,
    /// `runtime.blockprofilerate`, in CPU ticks (1: every blocking event;
    /// 0: off).
    pub block: i64,
}

impl Rates {
    /// Everything sampled Go's default way for the heap, and every mutex
    /// contention and blocking event (as `SetMutexProfileFraction(1)` and
    /// `SetBlockProfileRate(1)`).
    pub const ALL_EVENTS: Rates = Rates {
        mem: super::heap::DEFAULT_MEM_PROFILE_RATE,
        mutex: 1,
        block: 1,
    };
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "MemProfileRate {}, mutex profile fraction {}, block profile rate {} ticks",
            self.mem, self.mutex, self.block
        )
    }
}

/// The rates asked for on the command line (`--go-rates
/// heap=512K,mutex=1,block=1`): each one given replaces the program's own,
/// the others are left as they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RatesRequest {
    /// `heap=SIZE`: `runtime.MemProfileRate`, bytes per sample (`512K`,
    /// `1` for every allocation, `0` off).
    pub mem: Option<i64>,
    /// `mutex=N`: one in N contended unlocks (`runtime.mutexprofilerate`,
    /// as `SetMutexProfileFraction(N)`; 0 off).
    pub mutex: Option<u64>,
    /// `block=NS`: as `SetBlockProfileRate(NS)`, one blocking event per
    /// this many nanoseconds blocked (1: every event; 0 off).
    pub block_ns: Option<u64>,
}

/// The words `--go-rates` takes, for its messages.
pub const RATES_USAGE: &str = "heap=SIZE (bytes per heap sample, e.g. 512K; 1: every allocation), \
     mutex=N (1 in N contentions; 1: all), block=NS (nanoseconds blocked per sample; 1: every \
     event), comma-separated; 0 turns one off";

impl RatesRequest {
    /// Parses `heap=512K,mutex=1,block=1` (any subset, any order; sizes in
    /// bytes with an optional K, M or G suffix, powers of 1024).
    pub fn parse(text: &str) -> Result<RatesRequest, String> {
        let mut request = RatesRequest::default();
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            let Some((name, value)) = word.split_once('=') else {
                return Err(format!("{word:?} is not NAME=VALUE; give {RATES_USAGE}"));
            };
            let number = |value: &str| -> Result<u64, String> {
                let value = value.trim();
                let (digits, scale) = match value
                    .to_ascii_uppercase()
                    .trim_end_matches("IB")
                    .trim_end_matches('B')
                {
                    v if v.ends_with('K') => (v.len() - 1, 1u64 << 10),
                    v if v.ends_with('M') => (v.len() - 1, 1 << 20),
                    v if v.ends_with('G') => (v.len() - 1, 1 << 30),
                    v => (v.len(), 1),
                };
                value
                    .get(..digits)
                    .and_then(|d| d.trim().parse::<u64>().ok())
                    .and_then(|n| n.checked_mul(scale))
                    .filter(|n| i64::try_from(*n).is_ok())
                    .ok_or_else(|| {
                        format!("{name}={value}: not a whole number; give {RATES_USAGE}")
                    })
            };
            match name.trim() {
                "heap" | "mem" | "memory" => {
                    request.mem = Some(number(value)?.cast_signed());
                }
                "mutex" => request.mutex = Some(number(value)?),
                "block" => request.block_ns = Some(number(value)?),
                other => {
                    return Err(format!("unknown rate {other:?}; give {RATES_USAGE}"));
                }
            }
        }
        if request == RatesRequest::default() {
            return Err(format!("no rate given; give {RATES_USAGE}"));
        }
        Ok(request)
    }

    /// The rates to write into a program whose rates are `now`, with the
    /// CPU's `ticks_per_second` (the block rate is kept in ticks; converted
    /// as `SetBlockProfileRate` does).
    pub fn applied_to(self, now: Rates, ticks_per_second: f64) -> Rates {
        Rates {
            mem: self.mem.unwrap_or(now.mem),
            mutex: self.mutex.unwrap_or(now.mutex),
            block: match self.block_ns {
                None => now.block,
                Some(0) => 0,
                Some(1) => 1,
                Some(ns) => ((ns as f64 * ticks_per_second / 1e9) as i64).max(1),
            },
        }
    }
}

/// The rate of the CPU's time-stamp counter (what Go's `cputicks` reads on
/// amd64), measured over 20 ms; only needed for a block rate above 1 ns.
pub fn ticks_per_second() -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let started = std::time::Instant::now();
        // SAFETY: RDTSC has no preconditions on x86_64.
        let first = unsafe { core::arch::x86_64::_rdtsc() };
        std::thread::sleep(std::time::Duration::from_millis(20));
        // SAFETY: as above.
        let last = unsafe { core::arch::x86_64::_rdtsc() };
        last.wrapping_sub(first) as f64 / started.elapsed().as_secs_f64()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        1e9
    }
}

/// Why the rates cannot be read or written in a process.
#[derive(Debug, thiserror::Error)]
pub enum RatesError {
    /// The program is not one this reader knows (the sentence says why).
    #[error("cannot reach Go's profiling rates: {0}")]
    Unsupported(String),
    /// A variable was not found where it should be.
    #[error("cannot reach Go's profiling rates: the Go runtime's {what} was not found: {why}")]
    NotFound { what: &'static str, why: String },
    /// The process cannot be read (gone, or no permission).
    #[error("cannot reach Go's profiling rates of process {pid}: {source}")]
    Process { pid: u32, source: io::Error },
}

/// Where the rates of one Go process are.
pub struct GoRates {
    pid: u32,
    /// ELF addresses of `MemProfileRate`, `mutexprofilerate`,
    /// `blockprofilerate`.
    elf: [u64; 3],
    bias: u64,
    mem: File,
}

/// The variables in the order of `GoRates::elf`.
const NAMES: [&str; 3] = [
    "runtime.MemProfileRate",
    "runtime.mutexprofilerate",
    "runtime.blockprofilerate",
];

impl GoRates {
    /// Finds the rates of process `pid`, running `binary` loaded at `bias`
    /// (process address minus ELF address). Fails, with a sentence saying
    /// why, for a Go release other than 1.19–1.27, a binary whose variables
    /// cannot be found, or a process whose memory cannot be read.
    pub fn new(pid: u32, binary: &GoBinary, bias: u64) -> Result<GoRates, RatesError> {
        let build = binary.build.as_ref().ok_or_else(|| {
            RatesError::Unsupported(
                "the binary has no Go build info (.go.buildinfo), so its Go release is unknown"
                    .to_owned(),
            )
        })?;
        let known = build.go_release().is_some_and(|(major, minor)| {
            major == 1 && (offsets::OLDEST..=offsets::NEWEST).contains(&minor)
        });
        if !known {
            return Err(RatesError::Unsupported(format!(
                "the program was built with {}, and the runtime's profiling rates are known for \
                 Go 1.{} to 1.{} only",
                build.go_version,
                offsets::OLDEST,
                offsets::NEWEST
            )));
        }
        let variables = ProfilingVariables::find(binary);
        let not_found = |what: &'static str| move |why: String| RatesError::NotFound { what, why };
        let elf = [
            variables
                .mem_profile_rate
                .map_err(not_found("heap sampling rate (runtime.MemProfileRate)"))?,
            variables.mutex_profile_rate.map_err(not_found(
                "mutex profile fraction (runtime.mutexprofilerate)",
            ))?,
            variables
                .block_profile_rate
                .map_err(not_found("block profile rate (runtime.blockprofilerate)"))?,
        ];
        for (name, address) in NAMES.iter().zip(elf) {
            let at = address.wrapping_add(bias);
            if !mprof::in_writable_mapping(pid, at, 8) {
                return Err(RatesError::NotFound {
                    what: "profiling rates",
                    why: format!(
                        "{name} found at {at:#x} (ELF {address:#x}) is not in the program's data"
                    ),
                });
            }
        }
        let mem = mprof::open_memory(pid).map_err(|source| RatesError::Process { pid, source })?;
        let rates = GoRates {
            pid,
            elf,
            bias,
            mem,
        };
        rates
            .read()
            .map_err(|source| RatesError::Process { pid, source })?;
        Ok(rates)
    }

    /// [`GoRates::new`] for the executable of process `pid`: reads the
    /// binary (`/proc/PID/exe`) and its load bias from the mappings.
    pub fn for_process(pid: u32) -> Result<GoRates, RatesError> {
        let (binary, bias): (Rc<GoBinary>, u64) =
            mprof::process_binary(pid).map_err(RatesError::Unsupported)?;
        GoRates::new(pid, &binary, bias)
    }

    /// The process.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The ELF addresses of `runtime.MemProfileRate`,
    /// `runtime.mutexprofilerate` and `runtime.blockprofilerate`, as found
    /// in the code.
    pub fn variables(&self) -> [(&'static str, u64); 3] {
        [0, 1, 2].map(|i| (NAMES[i], self.elf[i]))
    }

    fn address(&self, i: usize) -> u64 {
        self.elf[i].wrapping_add(self.bias)
    }

    /// The rates now.
    pub fn read(&self) -> io::Result<Rates> {
        let [mem, mutex, block] = [0, 1, 2].map(|i| mprof::read_u64(&self.mem, self.address(i)));
        match (mem, mutex, block) {
            (Some(mem), Some(mutex), Some(block)) => Ok(Rates {
                mem: mem.cast_signed(),
                mutex,
                block: block.cast_signed(),
            }),
            _ => Err(io::Error::other(format!(
                "cannot read the profiling rates of process {}: has it exited?",
                self.pid
            ))),
        }
    }

    /// Writes the rates that differ from those now in the process (see the
    /// module's description: this changes what the program does), then
    /// reads them back. Needs the right to write the process's memory (root,
    /// or its user with ptrace allowed).
    pub fn set(&self, rates: Rates) -> io::Result<()> {
        let now = self.read()?;
        let wanted = [
            rates.mem.cast_unsigned(),
            rates.mutex,
            rates.block.cast_unsigned(),
        ];
        let current = [
            now.mem.cast_unsigned(),
            now.mutex,
            now.block.cast_unsigned(),
        ];
        if wanted == current {
            return Ok(());
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/proc/{}/mem", self.pid))
            .map_err(|err| mprof::with_permission_hint(self.pid, err))?;
        for i in 0..3 {
            if wanted[i] == current[i] {
                continue;
            }
            let at = self.address(i);
            file.write_all_at(&wanted[i].to_le_bytes(), at)
                .map_err(|err| {
                    io::Error::new(
                        err.kind(),
                        format!(
                            "cannot write {} at {at:#x} in process {}: {err}",
                            NAMES[i], self.pid
                        ),
                    )
                })?;
        }
        let back = self.read()?;
        if back != rates {
            return Err(io::Error::other(format!(
                "the profiling rates of process {} read back as {back}, not {rates}: the program \
                 changed them meanwhile",
                self.pid
            )));
        }
        Ok(())
    }

    /// Sets `rates` and returns a guard that puts back the rates found
    /// before when it is dropped (or [`RatesGuard::restore`]d).
    pub fn set_until_dropped(self, rates: Rates) -> io::Result<RatesGuard> {
        let before = self.read()?;
        let guard = RatesGuard {
            rates: self,
            before,
            written: rates,
            restored: false,
        };
        guard.rates.set(rates)?;
        Ok(guard)
    }
}

/// Rates set in a process, put back when this is dropped: each variable
/// gets its old value back if it still holds the value written (one the
/// program changed meanwhile is the program's, and is left alone).
pub struct RatesGuard {
    rates: GoRates,
    before: Rates,
    written: Rates,
    restored: bool,
}

impl RatesGuard {
    /// The rates found before they were set.
    pub fn before(&self) -> Rates {
        self.before
    }

    /// The rates written.
    pub fn written(&self) -> Rates {
        self.written
    }

    /// The rates' process.
    pub fn rates(&self) -> &GoRates {
        &self.rates
    }

    /// Puts the old rates back now, saying if that failed (the process may
    /// have exited, which needs nothing put back).
    pub fn restore(mut self) -> io::Result<Rates> {
        self.restore_now()
    }

    fn restore_now(&mut self) -> io::Result<Rates> {
        if self.restored {
            return self.rates.read();
        }
        self.restored = true;
        let now = self.rates.read()?;
        let back = Rates {
            mem: if now.mem == self.written.mem {
                self.before.mem
            } else {
                now.mem
            },
            mutex: if now.mutex == self.written.mutex {
                self.before.mutex
            } else {
                now.mutex
            },
            block: if now.block == self.written.block {
                self.before.block
            } else {
                now.block
            },
        };
        self.rates.set(back)?;
        Ok(back)
    }
}

impl Drop for RatesGuard {
    fn drop(&mut self) {
        let _ = self.restore_now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rates in this process's own memory: read, set, restored by the
    /// guard, and a value the "program" changed meanwhile left alone.
    #[test]
    fn set_and_restore_in_own_memory() {
        use std::sync::atomic::{AtomicU64, Ordering};
        // Atomics: memory written behind Rust's back (through
        // /proc/self/mem), as the runtime's own variables are.
        let cell = Box::new([AtomicU64::new(524288), AtomicU64::new(0), AtomicU64::new(0)]);
        let at = |i: usize| cell[i].as_ptr() as u64;
        let value = |i: usize| cell[i].load(Ordering::SeqCst);
        let rates = GoRates {
            pid: std::process::id(),
            elf: [at(0), at(1), at(2)],
            bias: 0,
            mem: File::open("/proc/self/mem").expect("own memory"),
        };
        assert_eq!(
            rates.read().expect("reads"),
            Rates {
                mem: 524288,
                mutex: 0,
                block: 0
            }
        );
        let guard = rates.set_until_dropped(Rates::ALL_EVENTS).expect("sets");
        assert_eq!((value(0), value(1), value(2)), (524288, 1, 1));
        assert_eq!(guard.before().mutex, 0);
        drop(guard);
        assert_eq!((value(0), value(1), value(2)), (524288, 0, 0));

        let rates = GoRates {
            pid: std::process::id(),
            elf: [at(0), at(1), at(2)],
            bias: 0,
            mem: File::open("/proc/self/mem").expect("own memory"),
        };
        let guard = rates
            .set_until_dropped(Rates {
                mem: 1,
                mutex: 5,
                block: 1,
            })
            .expect("sets");
        // The "program" sets its own mutex fraction meanwhile.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open("/proc/self/mem")
            .expect("own memory");
        file.write_all_at(&7u64.to_le_bytes(), at(1))
            .expect("writes");
        let back = guard.restore().expect("restores");
        assert_eq!(
            back,
            Rates {
                mem: 524288,
                mutex: 7,
                block: 0
            }
        );
        assert_eq!((value(0), value(1), value(2)), (524288, 7, 0));
    }

    #[test]
    fn requests_parse_and_apply() {
        let r = RatesRequest::parse("heap=512K,mutex=1,block=1").expect("parses");
        assert_eq!(
            r,
            RatesRequest {
                mem: Some(524288),
                mutex: Some(1),
                block_ns: Some(1)
            }
        );
        let now = Rates {
            mem: 0,
            mutex: 5,
            block: 0,
        };
        assert_eq!(
            r.applied_to(now, 3e9),
            Rates {
                mem: 524288,
                mutex: 1,
                block: 1
            }
        );
        let r = RatesRequest::parse(" heap = 4KiB ").expect("parses");
        assert_eq!(r.mem, Some(4096));
        assert_eq!(r.applied_to(now, 3e9).mutex, 5);
        let r = RatesRequest::parse("block=1000").expect("parses");
        assert_eq!(r.applied_to(now, 3e9).block, 3000);
        assert_eq!(
            RatesRequest::parse("heap=1M").map(|r| r.mem),
            Ok(Some(1 << 20))
        );
        for bad in [
            "",
            "heap",
            "heap=x",
            "cpu=1",
            "heap=-1",
            "mutex=99999999999999999999",
        ] {
            let err = RatesRequest::parse(bad).expect_err(bad);
            assert!(err.contains("heap=SIZE"), "{bad}: {err}");
        }
        let tps = ticks_per_second();
        assert!(tps > 1e6, "{tps}");
    }

    #[test]
    fn unreadable_addresses_are_errors() {
        let rates = GoRates {
            pid: std::process::id(),
            elf: [8, 16, 24],
            bias: 0,
            mem: File::open("/proc/self/mem").expect("own memory"),
        };
        assert!(rates.read().is_err());
        assert!(rates.set(Rates::ALL_EVENTS).is_err());
        let shown = Rates::ALL_EVENTS.to_string();
        assert!(shown.contains("524288"), "{shown}");
    }
}
