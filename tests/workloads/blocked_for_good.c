/* Threads blocked for good, for recordings of waits still under way: two
 * threads deadlocked on two mutexes (ab takes lock_a then lock_b, ba takes
 * lock_b then lock_a, each pausing between), and one thread parked in
 * pthread_cond_wait on a condition never signalled. Prints "ready" once all
 * three are blocked, then sleeps in main for SECONDS.
 *
 * Usage: blocked_for_good SECONDS
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

pthread_mutex_t lock_a = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t lock_b = PTHREAD_MUTEX_INITIALIZER;
pthread_mutex_t cond_lock = PTHREAD_MUTEX_INITIALIZER;
pthread_cond_t never = PTHREAD_COND_INITIALIZER;

__attribute__((noinline)) void *take_a_then_b(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock_a);
    usleep(100000);
    pthread_mutex_lock(&lock_b);
    return NULL;
}

__attribute__((noinline)) void *take_b_then_a(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock_b);
    usleep(100000);
    pthread_mutex_lock(&lock_a);
    return NULL;
}

__attribute__((noinline)) void *wait_forever(void *arg) {
    (void)arg;
    pthread_mutex_lock(&cond_lock);
    for (;;)
        pthread_cond_wait(&never, &cond_lock);
    return NULL;
}

int main(int argc, char **argv) {
    unsigned seconds = argc > 1 ? (unsigned)atoi(argv[1]) : 60;
    pthread_t t[3];
    pthread_create(&t[0], NULL, take_a_then_b, NULL);
    pthread_create(&t[1], NULL, take_b_then_a, NULL);
    pthread_create(&t[2], NULL, wait_forever, NULL);
    usleep(300000);
    printf("ready\n");
    fflush(stdout);
    sleep(seconds);
    return 0;
}
