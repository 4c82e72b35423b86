/* N threads contend for one global pthread mutex, g_lock, each holding it
 * for HOLD_US microseconds (busy) in hold_lock(), ROUNDS times.
 * The workload measures its own total time blocked in pthread_mutex_lock:
 *   lock_wait_ns=<total over threads> rounds=<n> threads=<n>
 * Usage: mutex_contend THREADS ROUNDS HOLD_US */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_ulong lock_wait_ns;
static volatile unsigned long shared_counter;
/* Statements after the last calls keep them from becoming tail jumps at -O2,
 * so release_lock and hold_lock stay on the stack of the unlock. */
static volatile unsigned long releases;
static int rounds;
static long hold_us;

static unsigned long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000UL + ts.tv_nsec;
}

__attribute__((noinline)) void take_lock(void) {
    unsigned long start = now_ns();
    pthread_mutex_lock(&g_lock);
    atomic_fetch_add(&lock_wait_ns, now_ns() - start);
}

__attribute__((noinline)) void release_lock(void) {
    pthread_mutex_unlock(&g_lock);
    releases++;
}

__attribute__((noinline)) void hold_lock(void) {
    take_lock();
    unsigned long until = now_ns() + hold_us * 1000UL;
    while (now_ns() < until) shared_counter++;
    release_lock();
    releases++;
}

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < rounds; i++) hold_lock();
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    rounds = argc > 2 ? atoi(argv[2]) : 200;
    hold_us = argc > 3 ? atol(argv[3]) : 1000;
    pthread_t tids[64];
    if (threads > 64) threads = 64;
    for (int i = 0; i < threads; i++) pthread_create(&tids[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++) pthread_join(tids[i], NULL);
    printf("lock_wait_ns=%lu rounds=%d threads=%d\n", (unsigned long)lock_wait_ns, rounds, threads);
    return 0;
}
