/* A master process that forks single-threaded workers, for profiling a
 * whole process tree: worker A and worker B at once, worker C after
 * LATE_DELAY seconds (the master sleeps meanwhile, using no CPU). Each
 * worker names itself (prctl PR_SET_NAME: worker_a, worker_b, worker_c)
 * and burns CPU in its own function (burn_a, burn_b, burn_c) until SECONDS
 * after the master started, so C burns SECONDS - LATE_DELAY. Workers die
 * with the master (PR_SET_PDEATHSIG). Prints, each line flushed:
 *   master pid=<pid>                                  (at start)
 *   worker a pid=<pid>                                (as A starts)
 *   worker a done pid=<pid> cpu_seconds=<its CPU time> (as A ends)
 *   done                                              (all workers reaped)
 * Usage: forking_master SECONDS LATE_DELAY
 * Built -O0 with frame pointers so every burn function keeps its frame. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static volatile unsigned long sink;
static double start, seconds, late_delay;
static pid_t master;

static double clock_seconds(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now(void) { return clock_seconds(CLOCK_MONOTONIC); }

__attribute__((noinline)) void burn_a(double until) {
    while (now() < until)
        for (int i = 0; i < 10000; i++) sink += i;
}

__attribute__((noinline)) void burn_b(double until) {
    while (now() < until)
        for (int i = 0; i < 10000; i++) sink += i;
}

__attribute__((noinline)) void burn_c(double until) {
    while (now() < until)
        for (int i = 0; i < 10000; i++) sink += i;
}

static void sleep_until(double when) {
    for (;;) {
        double left = when - now();
        if (left <= 0) return;
        struct timespec req = {(time_t)left, (long)((left - (time_t)left) * 1e9)};
        if (nanosleep(&req, NULL) == 0) return;
        if (errno != EINTR) return;
    }
}

static pid_t start_worker(char which, void (*burn)(double)) {
    /* Nothing buffered may be copied into the child. */
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(1);
    }
    if (pid > 0) return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    if (getppid() != master) _exit(1); /* the master died before the prctl */
    char name[16];
    snprintf(name, sizeof name, "worker_%c", which);
    prctl(PR_SET_NAME, name, 0, 0, 0);
    printf("worker %c pid=%d\n", which, (int)getpid());
    fflush(stdout);
    burn(start + seconds);
    printf("worker %c done pid=%d cpu_seconds=%.6f\n", which, (int)getpid(),
           clock_seconds(CLOCK_PROCESS_CPUTIME_ID));
    fflush(stdout);
    _exit(0);
}

int main(int argc, char **argv) {
    seconds = argc > 1 ? atof(argv[1]) : 8.0;
    late_delay = argc > 2 ? atof(argv[2]) : 2.0;
    start = now();
    master = getpid();
    printf("master pid=%d\n", (int)master);
    fflush(stdout);
    int workers = 0;
    start_worker('a', burn_a);
    start_worker('b', burn_b);
    workers += 2;
    if (late_delay < seconds) {
        sleep_until(start + late_delay);
        start_worker('c', burn_c);
        workers++;
    }
    while (workers > 0) {
        if (waitpid(-1, NULL, 0) > 0)
            workers--;
        else if (errno != EINTR)
            break;
    }
    printf("done\n");
    return 0;
}
