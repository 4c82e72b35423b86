// clock_hot: one goroutine spends nearly all its CPU in hotClock, which calls
// time.Now() in a loop (so much of it runs in the vDSO, on the g0 stack), and
// a small share (about a tenth) in coldWork, pure arithmetic. Both are
// //go:noinline and called from clockLoop.
//
// Usage: clock_hot PORT [SECONDS]
//
//   - PORT: serves net/http/pprof (/debug/pprof/) on 127.0.0.1:PORT; 0 picks
//     a free port.
//   - SECONDS: exits (status 0) after that long; absent or 0, runs until
//     killed.
//
// Prints `port=<n>` (the port it listens on) as its first line, then, about
// every second, `checksum=<c> rounds=<r>`: after r rounds, c is the state of
// the LCG x' = x*6364136223846793005 + 1442695040888963407 (mod 2^64) started
// at x = 1 and stepped r*coldSteps (150000) times, so a test can recompute it
// and see that the program kept computing correctly. If the monotonic clock
// ever goes backwards it prints `error: clock went backwards` and exits 1.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"strconv"
	"time"
)

const (
	// time.Now() calls per round (a few ms).
	hotCalls = 40000
	// LCG steps per round (about a tenth of the CPU).
	coldSteps = 150000
)

// hotClock calls time.Now() n times and fails if the clock goes backwards.
//
//go:noinline
func hotClock(n int, last time.Time) time.Time {
	for i := 0; i < n; i++ {
		now := time.Now()
		if now.Before(last) {
			fmt.Println("error: clock went backwards")
			os.Exit(1)
		}
		last = now
	}
	return last
}

// coldWork steps the LCG n times from x.
//
//go:noinline
func coldWork(x uint64, n int) uint64 {
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

// clockLoop runs rounds of hotClock then coldWork, printing the checksum
// about every second.
//
//go:noinline
func clockLoop() {
	x := uint64(1)
	rounds := uint64(0)
	last := time.Now()
	next := last.Add(time.Second)
	for {
		last = hotClock(hotCalls, last)
		x = coldWork(x, coldSteps)
		rounds++
		if !last.Before(next) {
			fmt.Printf("checksum=%d rounds=%d\n", x, rounds)
			next = last.Add(time.Second)
		}
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: clock_hot PORT [SECONDS]")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)
	go http.Serve(ln, nil)
	if len(os.Args) > 2 {
		if s, err := strconv.ParseFloat(os.Args[2], 64); err == nil && s > 0 {
			time.AfterFunc(time.Duration(s*float64(time.Second)), func() { os.Exit(0) })
		}
	}
	clockLoop()
}
