/* A function that realigns its stack (an over-aligned local beside a
 * variable-length allocation): gcc keeps the caller's stack pointer in its
 * frame and describes it with DWARF expressions (CFA = *(rbp - 8), rbp
 * saved at rbp), which the in-kernel walker evaluates. Build with
 * -O2 -fomit-frame-pointer -mstackrealign. Usage: realigned SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <alloca.h>
#include <time.h>
static volatile unsigned long sink;
__attribute__((noinline)) void spin(char *p) { for (unsigned long i = 0; i < 1000000; i++) sink += i + p[0]; }
__attribute__((noinline)) void aligned_caller(int n) {
    __attribute__((aligned(64))) volatile char buf[64];
    char *vla = alloca(n);
    vla[0] = 1; buf[0] = 1;
    spin(vla);
    buf[1] = buf[0];
}
int main(int argc, char **argv) {
    double s = argc > 1 ? atof(argv[1]) : 1;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do { aligned_caller(argc + 16); clock_gettime(CLOCK_MONOTONIC, &b); } while (b.tv_sec - a.tv_sec + (b.tv_nsec - a.tv_nsec) / 1e9 < s);
    return 0;
}
