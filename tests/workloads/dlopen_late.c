/* Waits DELAY seconds, then dlopens LIBRARY and calls its lib_hot() from
 * call_into_lib(), so the library's code is mapped only after the profiler
 * has started. Usage: dlopen_late LIBRARY DELAY */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static volatile unsigned long calls;

__attribute__((noinline)) void call_into_lib(void (*hot)(void)) {
    hot();
    calls++;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    double delay = argc > 2 ? atof(argv[2]) : 0.5;
    usleep((useconds_t)(delay * 1e6));
    void *lib = dlopen(argv[1], RTLD_NOW);
    if (!lib) {
        fprintf(stderr, "dlopen: %s\n", dlerror());
        return 1;
    }
    void (*hot)(void) = (void (*)(void))dlsym(lib, "lib_hot");
    if (!hot) return 1;
    call_into_lib(hot);
    printf("calls=%lu\n", calls);
    return 0;
}
