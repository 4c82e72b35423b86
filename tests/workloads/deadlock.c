/* Two threads deadlocked on two global mutexes: "alpha" takes lock_a then
 * lock_b, "beta" takes lock_b then lock_a, and a barrier makes sure each
 * holds its first lock before it asks for the second. The main thread waits
 * in pthread_join forever. Prints "deadlocked" once both are about to
 * block. Usage: deadlock */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
static pthread_barrier_t both_hold_one;

__attribute__((noinline)) static void take_second(pthread_mutex_t *second) {
    pthread_mutex_lock(second);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) static void *alpha(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "alpha");
    pthread_mutex_lock(&lock_a);
    pthread_barrier_wait(&both_hold_one);
    take_second(&lock_b);
    return NULL;
}

__attribute__((noinline)) static void *beta(void *arg) {
    (void)arg;
    pthread_setname_np(pthread_self(), "beta");
    pthread_mutex_lock(&lock_b);
    pthread_barrier_wait(&both_hold_one);
    take_second(&lock_a);
    return NULL;
}

int main(void) {
    pthread_t a, b;
    pthread_barrier_init(&both_hold_one, NULL, 2);
    pthread_create(&a, NULL, alpha, NULL);
    pthread_create(&b, NULL, beta, NULL);
    printf("deadlocked\n");
    fflush(stdout);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    return 0;
}
