// lock_bench: Go lock and channel traffic at fixed rates, for
// `cargo xtask bench gowaits` (alone, under `profiler record --profile
// gomutex,goblock`, and under Go's own mutex and block profiling).
//
// Usage: lock_bench SECONDS [goprof]
//
//   - about 1M Lock/Unlock pairs per second on a mutex no one else takes
//     (uncontended: never parks);
//   - about 100k Lock/Unlock pairs per second on one mutex shared by 4
//     goroutines that each hold it for ~1 µs (contended: some park);
//   - about 200k channel operations per second: a sender and a receiver on
//     an unbuffered channel (100k sends, 100k receives; the receiver parks);
//   - `goprof`: runtime.SetMutexProfileFraction(1) and
//     runtime.SetBlockProfileRate(1) first (Go's own instrumentation).
//
// Each stream runs in batches every millisecond and catches up when late,
// so a slowed program shows as a lower rate. Prints one line at the end:
// uncontended_per_second, contended_per_second, chan_ops_per_second,
// cpu_seconds_per_second (the process's user+system CPU per wall second).
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var sink uint64

// paced runs `perSecond` calls of op a second in 1 ms batches until
// `until`, and returns how many it made.
func paced(perSecond int, until time.Time, op func()) int64 {
	start := time.Now()
	var done int64
	for {
		now := time.Now()
		if now.After(until) {
			return done
		}
		due := int64(now.Sub(start).Seconds() * float64(perSecond))
		if done >= due {
			time.Sleep(time.Millisecond)
			continue
		}
		for ; done < due; done++ {
			op()
		}
	}
}

func spin(n int) {
	for i := 0; i < n; i++ {
		sink++
	}
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: lock_bench SECONDS [goprof]")
		os.Exit(2)
	}
	seconds, err := strconv.ParseFloat(os.Args[1], 64)
	if err != nil || seconds <= 0 {
		fmt.Fprintln(os.Stderr, "SECONDS must be a positive number")
		os.Exit(2)
	}
	if len(os.Args) > 2 && os.Args[2] == "goprof" {
		runtime.SetMutexProfileFraction(1)
		runtime.SetBlockProfileRate(1)
	}
	cpu0 := cpuSeconds()
	t0 := time.Now()
	until := t0.Add(time.Duration(seconds * float64(time.Second)))
	var uncontended, contended, chanOps int64
	var all sync.WaitGroup
	start := func(f func()) {
		all.Add(1)
		go func() {
			defer all.Done()
			f()
		}()
	}
	var own sync.Mutex
	start(func() {
		atomic.AddInt64(&uncontended, paced(1_000_000, until, func() {
			own.Lock()
			sink++
			own.Unlock()
		}))
	})
	var shared sync.Mutex
	for i := 0; i < 4; i++ {
		start(func() {
			atomic.AddInt64(&contended, paced(25_000, until, func() {
				shared.Lock()
				spin(300)
				shared.Unlock()
			}))
		})
	}
	ch := make(chan int)
	start(func() {
		for v := range ch {
			sink += uint64(v)
		}
	})
	start(func() {
		n := paced(100_000, until, func() { ch <- 1 })
		close(ch)
		atomic.AddInt64(&chanOps, 2*n)
	})
	all.Wait()
	wall := time.Since(t0).Seconds()
	fmt.Printf("uncontended_per_second=%.0f contended_per_second=%.0f chan_ops_per_second=%.0f cpu_seconds_per_second=%.3f\n",
		float64(uncontended)/wall, float64(contended)/wall, float64(chanOps)/wall, (cpuSeconds()-cpu0)/wall)
}
