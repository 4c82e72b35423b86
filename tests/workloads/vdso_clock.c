/* Spends its time reading the clock through the vDSO from read_clocks():
 * stacks taken inside the vDSO must still unwind back to main.
 * Usage: vdso_clock SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile long sink;

__attribute__((noinline)) void read_clocks(double seconds) {
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        for (int i = 0; i < 1000; i++) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            sink += now.tv_nsec;
        }
    } while ((now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9 < seconds);
    sink++;
}

int main(int argc, char **argv) {
    read_clocks(argc > 1 ? atof(argv[1]) : 2.0);
    printf("sink=%ld\n", sink);
    return 0;
}
