/* Thread churn: every 10 ms on average the main thread starts a short-lived
 * detached thread named "churner" that spins 5 ms in churn_work() and sleeps
 * 2 ms, then exits, for SECONDS seconds (about 100 threads a second, half a
 * core). The interval varies from 5 to 15 ms: a fixed one (10 ms plus the
 * time to start a thread, about 10.1 ms) locks in phase with 99 Hz sampling,
 * and the samples then say anything from 10% to 200% of the CPU used. Prints:
 *   threads=<created>
 * Usage: thread_churn SECONDS */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static unsigned long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000UL + ts.tv_nsec;
}

__attribute__((noinline)) static void *churn_work(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "churner");
    unsigned long until = now_ns() + 5000000UL;
    while (now_ns() < until) {
    }
    usleep(2000);
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10.0;
    unsigned long end = now_ns() + (unsigned long)(seconds * 1e9);
    unsigned long threads = 0;
    while (now_ns() < end) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, churn_work, NULL) == 0) {
            pthread_detach(thread);
            threads++;
        }
        usleep(5000 + rand() % 10001);
    }
    printf("threads=%lu\n", threads);
    return 0;
}
