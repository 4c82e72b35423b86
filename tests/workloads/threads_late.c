/* Starts with one idle-ish thread, then after DELAY seconds creates a worker
 * thread that burns CPU in late_worker() for WORK seconds. Used to check that
 * threads created while the profiler records are profiled too.
 * Usage: threads_late DELAY WORK */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static double work_seconds;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void late_worker_spin(void) {
    double start = now();
    while (now() - start < work_seconds)
        for (int i = 0; i < 100000; i++) sink += i;
}

static void *late_worker(void *arg) {
    (void)arg;
    late_worker_spin();
    return NULL;
}

int main(int argc, char **argv) {
    double delay = argc > 1 ? atof(argv[1]) : 1.0;
    work_seconds = argc > 2 ? atof(argv[2]) : 1.0;
    usleep((useconds_t)(delay * 1e6));
    pthread_t thread;
    if (pthread_create(&thread, NULL, late_worker, NULL) != 0) return 1;
    pthread_setname_np(thread, "late-worker");
    pthread_join(thread, NULL);
    return 0;
}
