/* Context-switch heavy: two threads hand a token back and forth through two
 * pipes for SECONDS; every hand-off blocks one thread and wakes the other.
 * Prints its throughput:
 *   round_trips_per_second=<n>
 * Usage: pingpong SECONDS */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int ping[2], pong[2];
static volatile int done;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void *ponger(void *arg) {
    (void)arg;
    char c;
    while (read(ping[0], &c, 1) == 1) {
        if (c == 'q') break;
        if (write(pong[1], &c, 1) != 1) break;
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 5.0;
    if (pipe(ping) || pipe(pong)) return 1;
    pthread_t thread;
    pthread_create(&thread, NULL, ponger, NULL);
    unsigned long trips = 0;
    char c = 'x';
    double start = now(), t;
    do {
        for (int i = 0; i < 100; i++) {
            if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) return 1;
        }
        trips += 100;
        t = now();
    } while (t - start < seconds);
    c = 'q';
    if (write(ping[1], &c, 1) != 1) return 1;
    pthread_join(thread, NULL);
    printf("round_trips_per_second=%.0f\n", trips / (t - start));
    return 0;
}
