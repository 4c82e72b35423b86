/* CPU workload with a known split: hot_three does three times the work of
 * hot_one, every round, so on-CPU time splits 75/25 between them.
 * Usage: cpu_split SECONDS. Prints its own CPU time and rounds at exit:
 *   cpu_seconds=<s> rounds=<n> rounds_per_second=<r>
 * Built -O0 with frame pointers so every function keeps its frame. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define UNIT 200000UL

static volatile unsigned long sink;

__attribute__((noinline)) void hot_three(void) {
    for (unsigned long i = 0; i < 3 * UNIT; i++) sink += i;
}

__attribute__((noinline)) void hot_one(void) {
    for (unsigned long i = 0; i < UNIT; i++) sink += i;
}

static double seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double duration = argc > 1 ? atof(argv[1]) : 5.0;
    double start = seconds(CLOCK_MONOTONIC), now;
    unsigned long rounds = 0;
    do {
        hot_three();
        hot_one();
        rounds++;
        now = seconds(CLOCK_MONOTONIC);
    } while (now - start < duration);
    printf("cpu_seconds=%.6f rounds=%lu rounds_per_second=%.3f\n",
           seconds(CLOCK_PROCESS_CPUTIME_ID), rounds, rounds / (now - start));
    return 0;
}
