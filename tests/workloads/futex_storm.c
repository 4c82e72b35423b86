/* A futex storm: THREADS threads each loop on a private futex word, calling
 * FUTEX_WAIT with a stale value (returns EAGAIN at once: a wait that does not
 * block) and FUTEX_WAKE with no waiter, for SECONDS. Prints its throughput:
 *   futex_calls_per_second=<n>
 * Usage: futex_storm THREADS SECONDS */
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static double seconds;
static atomic_ulong calls;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((noinline)) void storm(unsigned int *word) {
    unsigned long n = 0;
    double start = now();
    while (now() - start < seconds) {
        for (int i = 0; i < 1000; i++) {
            syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, *word + 1, NULL, NULL, 0);
            syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
        }
        n += 2000;
    }
    atomic_fetch_add(&calls, n);
}

static void *worker(void *arg) {
    (void)arg;
    unsigned int word = 0;
    storm(&word);
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    seconds = argc > 2 ? atof(argv[2]) : 5.0;
    pthread_t tids[64];
    if (threads > 64) threads = 64;
    double start = now();
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    printf("futex_calls_per_second=%.0f\n", (double)calls / (now() - start));
    return 0;
}
