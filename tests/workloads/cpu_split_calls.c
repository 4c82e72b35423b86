/* Like cpu_split, with one more level: main -> run_round -> hot_three and
 * hot_one, which split on-CPU time 3:1. Built -O2 -fomit-frame-pointer by the
 * DWARF-unwinding tests, so only .eh_frame can recover the callers.
 * Usage: cpu_split_calls SECONDS
 * Prints: cpu_seconds=<s> rounds=<n> */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define UNIT 200000UL

static volatile unsigned long sink;
volatile unsigned long rounds_done;

__attribute__((noinline)) void hot_three(void) {
    for (unsigned long i = 0; i < 3 * UNIT; i++) sink += i;
}

__attribute__((noinline)) void hot_one(void) {
    for (unsigned long i = 0; i < UNIT; i++) sink += i;
}

/* The increment after the calls keeps them from becoming tail jumps. */
__attribute__((noinline)) void run_round(void) {
    hot_three();
    hot_one();
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
    while (seconds(CLOCK_MONOTONIC) - start < duration) run_round();
    printf("cpu_seconds=%.6f rounds=%lu\n", seconds(CLOCK_PROCESS_CPUTIME_ID), rounds_done);
    return 0;
}
