//! THREADS threads contend for one `static LOCK: std::sync::Mutex`, each
//! holding it for HOLD_US microseconds (busy) in `hold_rust_lock`, ROUNDS
//! times, and measure their own total time blocked in `lock()`:
//!   lock_wait_ns=<total> rounds=<n> threads=<n>
//! Usage: rust_mutex THREADS ROUNDS HOLD_US
use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

static LOCK: Mutex<u64> = Mutex::new(0);
static LOCK_WAIT_NS: AtomicU64 = AtomicU64::new(0);

#[inline(never)]
fn hold_rust_lock(hold: Duration) {
    let start = Instant::now();
    let mut guard = match LOCK.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    };
    LOCK_WAIT_NS.fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    let until = Instant::now() + hold;
    while Instant::now() < until {
        *guard += 1;
    }
}

#[inline(never)]
fn rust_worker(rounds: u32, hold: Duration) {
    for _ in 0..rounds {
        hold_rust_lock(hold);
    }
}

fn main() {
    let args: Vec<u64> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let threads = args.first().copied().unwrap_or(4);
    let rounds = args.get(1).copied().unwrap_or(100) as u32;
    let hold = Duration::from_micros(args.get(2).copied().unwrap_or(1000));
    let handles: Vec<_> = (0..threads)
        .map(|_| std::thread::spawn(move || rust_worker(rounds, hold)))
        .collect();
    for handle in handles {
        let _ = handle.join();
    }
    println!(
        "lock_wait_ns={} rounds={rounds} threads={threads}",
        LOCK_WAIT_NS.load(Ordering::Relaxed)
    );
}
