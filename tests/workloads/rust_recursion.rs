//! Recurses DEPTH frames deep through `descend`, spinning at the bottom for
//! SECONDS. Built as a release binary without frame pointers, so only
//! .eh_frame can walk back to `main`.
//! Usage: rust_recursion DEPTH SECONDS
use std::{hint::black_box, time::Instant};

#[inline(never)]
fn spin_at_bottom(seconds: f64) -> u64 {
    let start = Instant::now();
    let mut x = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        for i in 0..10_000u64 {
            x = black_box(x.wrapping_add(i));
        }
    }
    x
}

#[inline(never)]
fn descend(depth: u32, seconds: f64) -> u64 {
    if depth == 0 {
        return spin_at_bottom(seconds);
    }
    // Work after the call keeps it from being a tail call.
    black_box(descend(black_box(depth - 1), seconds)).wrapping_add(u64::from(depth))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let depth = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100);
    let seconds = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(2.0);
    println!("result={}", descend(depth, seconds));
}
