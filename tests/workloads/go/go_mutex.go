// Goroutines contending for a sync.Mutex for SECONDS, while the Go runtime
// parks its idle threads: the futex and off-CPU profiles must label the
// runtime's idle parking and must not present it as lock contention.
// Usage: go_mutex SECONDS
package main

import (
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

var (
	mu      sync.Mutex
	counter uint64
)

//go:noinline
func holdGoLock(hold time.Duration) {
	mu.Lock()
	until := time.Now().Add(hold)
	for time.Now().Before(until) {
		counter++
	}
	mu.Unlock()
}

func main() {
	seconds := 2.0
	if len(os.Args) > 1 {
		if s, err := strconv.ParseFloat(os.Args[1], 64); err == nil {
			seconds = s
		}
	}
	deadline := time.Now().Add(time.Duration(seconds * float64(time.Second)))
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				holdGoLock(500 * time.Microsecond)
				time.Sleep(200 * time.Microsecond)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("counter=%d\n", counter)
}
