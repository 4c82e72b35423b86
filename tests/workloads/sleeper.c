/* Sleeps COUNT times for SLEEP_US microseconds in sleepy_function(), and
 * measures its own total time asleep (each nanosleep timed):
 *   slept_ns=<total> sleeps=<n>
 * Usage: sleeper COUNT SLEEP_US */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static unsigned long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000UL + ts.tv_nsec;
}

/* The call into libc goes through sleep_once(): glibc has no frame pointers,
 * so a frame-pointer stack taken inside nanosleep skips its direct caller
 * (sleep_once) but keeps sleepy_function. */
__attribute__((noinline)) void sleep_once(long sleep_us) {
    struct timespec req = {sleep_us / 1000000, (sleep_us % 1000000) * 1000};
    nanosleep(&req, NULL);
}

__attribute__((noinline)) unsigned long sleepy_function(long sleep_us) {
    unsigned long start = now_ns();
    sleep_once(sleep_us);
    return now_ns() - start;
}

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 100;
    long sleep_us = argc > 2 ? atol(argv[2]) : 10000;
    unsigned long slept = 0;
    for (int i = 0; i < count; i++) slept += sleepy_function(sleep_us);
    printf("slept_ns=%lu sleeps=%d\n", slept, count);
    return 0;
}
