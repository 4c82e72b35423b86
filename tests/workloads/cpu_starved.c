/* THREADS threads spin in busy_spin() for SECONDS: with more threads than
 * CPUs they are preempted and wait in the run queue, never blocking.
 * Usage: cpu_starved THREADS SECONDS */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double seconds;
static volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void busy_spin(void) {
    double start = now();
    while (now() - start < seconds)
        for (int i = 0; i < 10000; i++) sink += i;
}

static void *worker(void *arg) {
    (void)arg;
    busy_spin();
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 6;
    seconds = argc > 2 ? atof(argv[2]) : 3.0;
    pthread_t tids[64];
    if (threads > 64) threads = 64;
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    printf("threads=%d\n", threads);
    return 0;
}
