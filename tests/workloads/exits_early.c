/* Burns CPU in burn_then_exit() for SECONDS, then exits: a target that ends
 * in the middle of a recording (or a long-running burner, killed when done
 * with). Prints, each line flushed:
 *   pid=<pid>                  (at start)
 *   cpu_seconds=<its CPU time> (at exit)
 * Usage: exits_early SECONDS
 * Built -O0 with frame pointers so burn_then_exit keeps its frame. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;

static double clock_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void burn_then_exit(double seconds) {
    double until = clock_seconds(CLOCK_MONOTONIC) + seconds;
    while (clock_seconds(CLOCK_MONOTONIC) < until)
        for (int i = 0; i < 10000; i++) sink += i;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    printf("pid=%d\n", (int)getpid());
    fflush(stdout);
    burn_then_exit(seconds);
    printf("cpu_seconds=%.6f\n", clock_seconds(CLOCK_PROCESS_CPUTIME_ID));
    fflush(stdout);
    return 0;
}
