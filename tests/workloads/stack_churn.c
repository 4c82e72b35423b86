/* A workload whose stacks never settle, for soak runs: THREADS worker
 * threads ("churn-worker") each walk a new random call path again and
 * again — a recursion of random depth (1 to 24) that picks one of eight
 * distinct functions (path_0 .. path_7) at every level, so the stacks seen
 * keep changing — and at the bottom of each path (leaf()) either spin
 * 20-150 us, take the contended mutex g_churn_lock and spin 20-60 us
 * holding it, or sleep 100-500 us. Beside them one thread
 * ("churn-spawner") creates and joins a short-lived thread ("churn-short",
 * a few random paths) every 2-5 ms: thread churn.
 * Prints at exit:
 *   leaves=<n> lock_holds=<n> sleeps=<n> threads_created=<n>
 * Usage: stack_churn SECONDS [THREADS]   (SECONDS 0: until killed; THREADS
 * defaults to 3) */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#define PATHS 8
#define MAX_DEPTH 24
#define MAX_THREADS 64

pthread_mutex_t g_churn_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile unsigned long sink;
/* 0: forever. */
static unsigned long end_ns;
static atomic_ulong leaves, lock_holds, sleeps, threads_created;

static unsigned long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000UL + ts.tv_nsec;
}

static int done(void) { return end_ns != 0 && now_ns() >= end_ns; }

/* xorshift64: each thread its own sequence. */
static unsigned long next_random(unsigned long *state) {
    unsigned long x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

__attribute__((noipa)) void spin_us(unsigned long us) {
    unsigned long until = now_ns() + us * 1000UL;
    while (now_ns() < until)
        for (int i = 0; i < 200; i++) sink += i;
}

/* The bottom of a path: work, the lock, or a short sleep. */
__attribute__((noipa)) void leaf(unsigned long *rng) {
    unsigned long r = next_random(rng);
    unsigned long pick = r % 16, rest = r >> 8;
    if (pick < 8) {
        spin_us(20 + rest % 131);
    } else if (pick < 11) {
        pthread_mutex_lock(&g_churn_lock);
        spin_us(20 + rest % 41);
        pthread_mutex_unlock(&g_churn_lock);
        atomic_fetch_add(&lock_holds, 1);
    } else {
        usleep(100 + rest % 401);
        atomic_fetch_add(&sleeps, 1);
    }
    atomic_fetch_add(&leaves, 1);
}

__attribute__((noipa)) void step(int depth, unsigned long *rng);

/* Eight distinct frames; the statement after the call keeps each on the
 * stack (no tail jump). */
#define PATH(n)                                                    \
    __attribute__((noipa)) void path_##n(int depth, unsigned long *rng) { \
        sink += n;                                                 \
        step(depth, rng);                                          \
        sink ^= (unsigned long)depth;                              \
    }
PATH(0)
PATH(1)
PATH(2)
PATH(3)
PATH(4)
PATH(5)
PATH(6)
PATH(7)

static void (*const paths[PATHS])(int, unsigned long *) = {
    path_0, path_1, path_2, path_3, path_4, path_5, path_6, path_7,
};

__attribute__((noipa)) void step(int depth, unsigned long *rng) {
    if (depth <= 0) {
        leaf(rng);
    } else {
        paths[next_random(rng) % PATHS](depth - 1, rng);
    }
    sink++;
}

static void *worker(void *arg) {
    unsigned long rng = 0x9e3779b97f4a7c15UL * ((unsigned long)arg + 1);
    pthread_setname_np(pthread_self(), "churn-worker");
    while (!done()) step(1 + (int)(next_random(&rng) % MAX_DEPTH), &rng);
    return NULL;
}

static void *short_lived(void *arg) {
    unsigned long rng = (unsigned long)arg | 1;
    pthread_setname_np(pthread_self(), "churn-short");
    for (int i = 0; i < 4; i++) step(1 + (int)(next_random(&rng) % 8), &rng);
    return NULL;
}

static void *spawner(void *arg) {
    unsigned long rng = 0xda942042e4dd58b5UL ^ (unsigned long)arg;
    pthread_setname_np(pthread_self(), "churn-spawner");
    while (!done()) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, short_lived, (void *)next_random(&rng)) == 0) {
            pthread_join(thread, NULL);
            atomic_fetch_add(&threads_created, 1);
        }
        usleep(2000 + next_random(&rng) % 3001);
    }
    return NULL;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 10.0;
    int threads = argc > 2 ? atoi(argv[2]) : 3;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    end_ns = seconds > 0 ? now_ns() + (unsigned long)(seconds * 1e9) : 0;
    pthread_t workers[MAX_THREADS], churn;
    for (long i = 0; i < threads; i++) pthread_create(&workers[i], NULL, worker, (void *)i);
    pthread_create(&churn, NULL, spawner, (void *)(long)threads);
    for (int i = 0; i < threads; i++) pthread_join(workers[i], NULL);
    pthread_join(churn, NULL);
    printf("leaves=%lu lock_holds=%lu sleeps=%lu threads_created=%lu\n",
           (unsigned long)leaves, (unsigned long)lock_holds, (unsigned long)sleeps,
           (unsigned long)threads_created);
    return 0;
}
