// parked: N goroutines parked forever on a channel receive (in
// //go:noinline parkedForever), and one worker doing fixed arithmetic
// rounds for SECONDS seconds.
//
// Usage: parked N SECONDS
//
// Prints `ready goroutines=<n>` once all N are parked (as
// runtime.NumGoroutine counts them), then at the end
// `rounds_per_second=<r>`: the worker's rate, which tells what reading
// the goroutines from outside costs the program.
package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"
)

//go:noinline
func parkedForever(ch chan int) {
	<-ch
}

//go:noinline
func round(x uint64) uint64 {
	for i := 0; i < 10000; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: parked N SECONDS")
		os.Exit(2)
	}
	n, _ := strconv.Atoi(os.Args[1])
	seconds, _ := strconv.ParseFloat(os.Args[2], 64)
	ch := make(chan int)
	for i := 0; i < n; i++ {
		go parkedForever(ch)
	}
	for runtime.NumGoroutine() < n+1 {
		time.Sleep(time.Millisecond)
	}
	fmt.Printf("ready goroutines=%d\n", runtime.NumGoroutine())
	start := time.Now()
	end := start.Add(time.Duration(seconds * float64(time.Second)))
	x, rounds := uint64(1), 0
	for time.Now().Before(end) {
		x = round(x)
		rounds++
	}
	elapsed := time.Since(start).Seconds()
	fmt.Printf("rounds_per_second=%.1f checksum=%d\n", float64(rounds)/elapsed, x)
}
