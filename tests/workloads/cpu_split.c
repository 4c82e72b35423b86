/* CPU workload with a known split: hot_three does three times the work of
 * hot_one, every round, so on-CPU time splits 75/25 between them. The size
 * of a round varies (a fixed pseudo-random sequence, 1 to 8 units): with a
 * fixed size the round could last a whole number of sampling periods on
 * some machine (2.02 ms at -O0 is five rounds per 99 Hz period) and the
 * samples would lock onto one phase of it.
 * Usage: cpu_split SECONDS [ONE_FACTOR]. ONE_FACTOR (default 1) multiplies
 * hot_one's work: with 2, hot_one is twice as expensive and the split is
 * 60/40 (a regression for `profiler diff` to find).
 * Prints its own CPU time and rounds at exit:
 *   cpu_seconds=<s> rounds=<n> rounds_per_second=<r>
 * Built -O0 with frame pointers so every function keeps its frame. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define UNIT 50000UL

static volatile unsigned long sink;

__attribute__((noinline)) void hot_three(unsigned long units) {
    for (unsigned long i = 0; i < 3 * units * UNIT; i++) sink += i;
}

static unsigned long one_factor = 1;

__attribute__((noinline)) void hot_one(unsigned long units) {
    for (unsigned long i = 0; i < one_factor * units * UNIT; i++) sink += i;
}

static double seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double duration = argc > 1 ? atof(argv[1]) : 5.0;
    if (argc > 2 && atol(argv[2]) > 0) one_factor = (unsigned long)atol(argv[2]);
    double start = seconds(CLOCK_MONOTONIC), now;
    unsigned long rounds = 0, state = 12345;
    do {
        state = state * 6364136223846793005UL + 1442695040888963407UL;
        unsigned long units = 1 + (state >> 61);
        hot_three(units);
        hot_one(units);
        rounds++;
        now = seconds(CLOCK_MONOTONIC);
    } while (now - start < duration);
    printf("cpu_seconds=%.6f rounds=%lu rounds_per_second=%.3f\n",
           seconds(CLOCK_PROCESS_CPUTIME_ID), rounds, rounds / (now - start));
    return 0;
}
