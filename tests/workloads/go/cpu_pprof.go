// cpu_pprof: a CPU-bound program that profiles itself with Go's own
// runtime/pprof, so a test has Go's CPU profile of the very seconds it
// records the program itself. Every round, burnThree does three times the
// work of burnOne (steps of the same LCG), so on-CPU time splits 75/25
// between them. Both are //go:noinline and called from burnLoop. The size
// of a round varies (a fixed pseudo-random sequence, 1 to 8 units, as in
// tests/workloads/cpu_split.c): with a fixed size a round could last a
// whole number of sampling periods and the samples lock onto one phase.
// The loop yields (runtime.Gosched) after every round, so the runtime never
// preempts it with a signal (see burnLoop).
//
// Usage: cpu_pprof OUT.pprof SECONDS
//
//   - OUT.pprof: where pprof.StartCPUProfile writes Go's CPU profile
//     (gzipped profile.proto, 100 samples per second of CPU time),
//     complete once `done` is printed.
//   - SECONDS: how long it burns CPU with the profile running.
//
// Prints `pid=<pid>` once its profile has started, then, after SECONDS,
// stops the profile, closes the file and prints
// `done rounds=<n> checksum=<c>` and exits 0 (1 with `error: ...` on stderr
// if the profile cannot be written).
package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"time"
)

// LCG steps per unit of work (about 0.1 ms).
const unit = 100000

// sink keeps the LCG's result alive.
var sink uint64

// burnThree does 3 * units units of work.
//
//go:noinline
func burnThree(x uint64, units int) uint64 {
	for i := 0; i < 3*units*unit; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// burnOne does units units of work.
//
//go:noinline
func burnOne(x uint64, units int) uint64 {
	for i := 0; i < units*unit; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// burnLoop runs rounds of burnThree then burnOne for d; returns the rounds.
//
//go:noinline
func burnLoop(d time.Duration) uint64 {
	start := time.Now()
	x := uint64(1)
	state := uint64(12345)
	rounds := uint64(0)
	for time.Since(start) < d {
		state = state*6364136223846793005 + 1442695040888963407
		units := 1 + int(state>>61)
		x = burnThree(x, units)
		x = burnOne(x, units)
		rounds++
		// Yield every round (a few ms): a goroutine that runs 10 ms
		// without yielding is preempted by a signal, and Go's own profile
		// then charges to runtime.asyncPreempt samples that a recording
		// from outside puts in burnThree and burnOne (12% of Go 1.19's,
		// none of ours, when tried without this).
		runtime.Gosched()
	}
	sink = x
	return rounds
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "error: %s: %v\n", what, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: cpu_pprof OUT.pprof SECONDS")
		os.Exit(2)
	}
	seconds, err := strconv.ParseFloat(os.Args[2], 64)
	if err != nil || seconds <= 0 {
		fmt.Fprintln(os.Stderr, "usage: cpu_pprof OUT.pprof SECONDS (SECONDS > 0)")
		os.Exit(2)
	}
	out, err := os.Create(os.Args[1])
	if err != nil {
		fail("create the profile", err)
	}
	if err := pprof.StartCPUProfile(out); err != nil {
		fail("start the CPU profile", err)
	}
	fmt.Printf("pid=%d\n", os.Getpid())
	rounds := burnLoop(time.Duration(seconds * float64(time.Second)))
	pprof.StopCPUProfile()
	if err := out.Close(); err != nil {
		fail("close the profile", err)
	}
	fmt.Printf("done rounds=%d checksum=%d\n", rounds, sink)
}
