/* A shared library the dlopen workload loads after the profiler attached:
 * lib_hot() spins in lib_spin() for SECONDS. */
#include <time.h>

static volatile unsigned long lib_sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void lib_spin(double seconds) {
    double start = now();
    while (now() - start < seconds)
        for (unsigned long i = 0; i < 100000UL; i++) lib_sink += i;
}

__attribute__((noinline)) void lib_hot(void) {
    lib_spin(1.5);
    lib_sink++;
}
