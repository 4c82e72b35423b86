/* main -> hot_three -> spin and main -> hot_one -> spin, where hot_three
 * asks spin for three times the work of hot_one: the same leaf code, so
 * on-CPU time splits exactly 3:1 between the two callers at any
 * optimization level. Built -O2 -fomit-frame-pointer by the DWARF-unwinding
 * tests, so only .eh_frame can recover the callers.
 * Usage: cpu_split_calls SECONDS
 * Prints: cpu_seconds=<s> rounds=<n> */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define UNIT 200000UL

static volatile unsigned long sink;
volatile unsigned long rounds_done;

__attribute__((noinline)) void spin(unsigned long n) {
    for (unsigned long i = 0; i < n; i++) sink += i;
}

/* The increments after the calls keep them from becoming tail jumps. */
__attribute__((noinline)) void hot_three(void) {
    spin(3 * UNIT);
    rounds_done++;
}

__attribute__((noinline)) void hot_one(void) {
    spin(UNIT);
    rounds_done++;
}

static double seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double duration = argc > 1 ? atof(argv[1]) : 5.0;
    double start = seconds(CLOCK_MONOTONIC);
    while (seconds(CLOCK_MONOTONIC) - start < duration) {
        hot_three();
        hot_one();
    }
    printf("cpu_seconds=%.6f rounds=%lu\n", seconds(CLOCK_PROCESS_CPUTIME_ID), rounds_done);
    return 0;
}
