/* JIT-like code: main copies a small counting loop into anonymous
 * executable memory (no file backs it, no call-frame information covers
 * it) and calls it over and over for SECONDS.
 * Usage: jit_spin SECONDS */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

/* mov rcx, 0x200000; 1: dec rcx; jnz 1b; ret */
static const unsigned char code[] = {0x48, 0xc7, 0xc1, 0x00, 0x00, 0x20, 0x00,
                                     0x48, 0xff, 0xc9, 0x75, 0xfb, 0xc3};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 2.0;
    void *page = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    memcpy(page, code, sizeof code);
    if (mprotect(page, 4096, PROT_READ | PROT_EXEC) != 0) {
        perror("mprotect");
        return 1;
    }
    void (*jitted)(void) = (void (*)(void))page;
    unsigned long calls = 0;
    double start = now();
    while (now() - start < seconds) {
        jitted();
        calls++;
    }
    printf("calls=%lu\n", calls);
    return 0;
}
