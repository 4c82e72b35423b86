/* A thread that names itself "short-worker", spins in short_spin() for
 * WORK seconds and exits, while main lives on for LINGER seconds: the thread
 * is gone before the profiler's first drain reads /proc.
 * Usage: short_thread WORK LINGER */
#include <pthread.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

static double work_seconds;
static volatile unsigned long sink;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void short_spin(void) {
    double start = now();
    while (now() - start < work_seconds)
        for (int i = 0; i < 10000; i++) sink += i;
}

static void *worker(void *arg) {
    (void)arg;
    prctl(PR_SET_NAME, "short-worker", 0, 0, 0);
    short_spin();
    return NULL;
}

int main(int argc, char **argv) {
    work_seconds = argc > 1 ? atof(argv[1]) : 0.3;
    double linger = argc > 2 ? atof(argv[2]) : 1.5;
    pthread_t thread;
    if (pthread_create(&thread, NULL, worker, NULL) != 0) return 1;
    pthread_join(thread, NULL);
    usleep((useconds_t)(linger * 1e6));
    return 0;
}
