/* A shared library the dlopen workload loads after the profiler attached. */
static volatile unsigned long lib_sink;

__attribute__((noinline)) void lib_spin(double seconds_unused) {
    (void)seconds_unused;
    for (unsigned long i = 0; i < 400000000UL; i++) lib_sink += i;
}

__attribute__((noinline)) void lib_hot(void) {
    lib_spin(0);
    lib_sink++;
}
