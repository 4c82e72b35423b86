// go_waits: goroutines that wait in known ways, with Go's own mutex and
// block profiles on (fraction and rate 1) as the truth to check against.
//
// Usage: go_waits PORT
//
//   - PORT: serves net/http/pprof (/debug/pprof/) on 127.0.0.1:PORT; 0 picks
//     a free port. Prints `port=<n>` as its first line.
//   - GET /run?ms=N runs one phase of N milliseconds and answers, one
//     `key=value` per line, what the program measured itself in it:
//   - mutex: 2 goroutines take `mu` in lockMu and hold it for 1 ms (a
//     busy loop) before unlockMu releases it (two, so that at most one
//     waits at a time and Go's own figure is exact). `mutex_wait_ns` is the time
//     they spent in lockMu; `go_mutex_delay_ns` and `go_mutex_count` are
//     what Go's own mutex profile added in the phase for stacks through
//     main.unlockMu (delay converted from cycles as pprof does).
//   - channel: 3 goroutines receive in recvWork from a channel a sender
//     fills every 4 ms; `chan_wait_ns` is the time they spent in the
//     receive, `chan_waits` how many receives.
//   - a WaitGroup: waitGroupWork waits for a goroutine that sleeps 20 ms,
//     over and over (`wg_wait_ns`).
//   - sleepWork sleeps 10 ms at a time (`sleep_ns`).
//   - `checksum` is the sum of the values received, which depends only on
//     how many were sent (a program that misbehaved under probes would
//     answer a wrong one).
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	mu      sync.Mutex
	counter uint64
)

//go:noinline
func lockMu() { mu.Lock() }

//go:noinline
func unlockMu() { mu.Unlock() }

//go:noinline
func holdFor(d time.Duration) {
	until := time.Now().Add(d)
	for time.Now().Before(until) {
		counter++
	}
}

//go:noinline
func mutexWork(until time.Time, waited *int64) {
	for time.Now().Before(until) {
		t0 := time.Now()
		lockMu()
		atomic.AddInt64(waited, int64(time.Since(t0)))
		holdFor(time.Millisecond)
		unlockMu()
	}
}

//go:noinline
func recvWork(ch chan uint64, waited, waits *int64, sum *uint64) {
	for {
		t0 := time.Now()
		v, ok := <-ch
		if !ok {
			return
		}
		atomic.AddInt64(waited, int64(time.Since(t0)))
		atomic.AddInt64(waits, 1)
		atomic.AddUint64(sum, v)
	}
}

//go:noinline
func sendWork(ch chan uint64, until time.Time) {
	var v uint64
	for time.Now().Before(until) {
		time.Sleep(4 * time.Millisecond)
		v++
		ch <- v
	}
	close(ch)
}

//go:noinline
func waitGroupWork(until time.Time, waited *int64) {
	for time.Now().Before(until) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			time.Sleep(20 * time.Millisecond)
		}()
		t0 := time.Now()
		wg.Wait()
		atomic.AddInt64(waited, int64(time.Since(t0)))
	}
}

//go:noinline
func sleepWork(until time.Time, slept *int64) {
	for time.Now().Before(until) {
		t0 := time.Now()
		time.Sleep(10 * time.Millisecond)
		atomic.AddInt64(slept, int64(time.Since(t0)))
	}
}

// goMutexDelay sums Go's own mutex profile over stacks through
// main.unlockMu: nanoseconds (cycles over cycles/second, as pprof converts
// them) and contentions.
func goMutexDelay() (int64, int64) {
	var buf bytes.Buffer
	if err := pprof.Lookup("mutex").WriteTo(&buf, 1); err != nil {
		return -1, -1
	}
	var perSecond float64
	var cycles, count, sumCycles, sumCount int64
	inRecord, ours := false, false
	flush := func() {
		if inRecord && ours {
			sumCycles += cycles
			sumCount += count
		}
		inRecord, ours = false, false
	}
	scanner := bufio.NewScanner(&buf)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		line := scanner.Text()
		switch {
		case strings.HasPrefix(line, "cycles/second="):
			perSecond, _ = strconv.ParseFloat(strings.TrimPrefix(line, "cycles/second="), 64)
		case strings.Contains(line, " @ "):
			flush()
			fields := strings.Fields(line)
			if len(fields) >= 2 {
				cycles, _ = strconv.ParseInt(fields[0], 10, 64)
				count, _ = strconv.ParseInt(fields[1], 10, 64)
				inRecord = true
			}
		case strings.HasPrefix(line, "#") && strings.Contains(line, "main.unlockMu"):
			ours = true
		}
	}
	flush()
	if perSecond <= 0 {
		return -1, -1
	}
	return int64(float64(sumCycles) / perSecond * 1e9), sumCount
}

func run(w http.ResponseWriter, r *http.Request) {
	ms, err := strconv.Atoi(r.URL.Query().Get("ms"))
	if err != nil || ms <= 0 {
		http.Error(w, "give ms=N", http.StatusBadRequest)
		return
	}
	until := time.Now().Add(time.Duration(ms) * time.Millisecond)
	delay0, count0 := goMutexDelay()
	var mutexWait, chanWait, chanWaits, wgWait, slept int64
	var sum uint64
	var all sync.WaitGroup
	start := func(f func()) {
		all.Add(1)
		go func() {
			defer all.Done()
			f()
		}()
	}
	// Two goroutines: at most one waits at a time, so Go's own mutex
	// profile (which from Go 1.22 estimates the wait of further waiters
	// from the first one's) is exact, as ours is.
	for i := 0; i < 2; i++ {
		start(func() { mutexWork(until, &mutexWait) })
	}
	ch := make(chan uint64)
	for i := 0; i < 3; i++ {
		start(func() { recvWork(ch, &chanWait, &chanWaits, &sum) })
	}
	start(func() { sendWork(ch, until) })
	start(func() { waitGroupWork(until, &wgWait) })
	start(func() { sleepWork(until, &slept) })
	all.Wait()
	delay1, count1 := goMutexDelay()
	fmt.Fprintf(w, "mutex_wait_ns=%d\n", mutexWait)
	fmt.Fprintf(w, "go_mutex_delay_ns=%d\n", delay1-delay0)
	fmt.Fprintf(w, "go_mutex_count=%d\n", count1-count0)
	fmt.Fprintf(w, "chan_wait_ns=%d\n", chanWait)
	fmt.Fprintf(w, "chan_waits=%d\n", chanWaits)
	fmt.Fprintf(w, "wg_wait_ns=%d\n", wgWait)
	fmt.Fprintf(w, "sleep_ns=%d\n", slept)
	fmt.Fprintf(w, "checksum=%d\n", sum)
	fmt.Fprintf(w, "expected_checksum=%d\n", chanWaits*(chanWaits+1)/2)
}

func main() {
	runtime.SetMutexProfileFraction(1)
	runtime.SetBlockProfileRate(1)
	port := "0"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	listener, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	http.HandleFunc("/run", run)
	fmt.Printf("port=%d\n", listener.Addr().(*net.TCPAddr).Port)
	if err := http.Serve(listener, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
