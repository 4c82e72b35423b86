// leak: leaks one goroutine every 10 ms from leakOne (the `go` statement is
// in leakOne; the goroutine, main.leakOne.func1, blocks forever receiving
// from a channel nobody else holds), while shortLived starts three
// goroutines every 10 ms (main.shortLived.func1) that each sleep 2-4 ms and
// end. Both are //go:noinline and called from leakLoop. The number of
// goroutines grows by about 100 a second; the short-lived ones add only a
// few at any moment.
//
// Usage: leak PORT [SECONDS]
//
//   - PORT: serves net/http/pprof (/debug/pprof/) on 127.0.0.1:PORT; 0 picks
//     a free port. Also serves /count, which answers
//     `goroutines=<runtime.NumGoroutine()> leaked=<leaked so far>`.
//   - SECONDS: exits (status 0) after that long; absent or 0, runs until
//     killed.
//
// Prints `port=<n>` (the port it listens on) as its only line.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

// The number of goroutines leakOne started.
var leaked atomic.Int64

// leakOne starts a goroutine that never ends.
//
//go:noinline
func leakOne() {
	ch := make(chan int)
	go func() {
		<-ch
	}()
	leaked.Add(1)
}

// shortLived starts n goroutines that end after 2-4 ms.
//
//go:noinline
func shortLived(n int) {
	for i := 0; i < n; i++ {
		d := time.Duration(2+i%3) * time.Millisecond
		go func() {
			time.Sleep(d)
		}()
	}
}

// leakLoop calls leakOne and shortLived every 10 ms.
//
//go:noinline
func leakLoop() {
	for {
		leakOne()
		shortLived(3)
		time.Sleep(10 * time.Millisecond)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: leak PORT [SECONDS]")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	http.HandleFunc("/count", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "goroutines=%d leaked=%d\n", runtime.NumGoroutine(), leaked.Load())
	})
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)
	go http.Serve(ln, nil)
	if len(os.Args) > 2 {
		if s, err := strconv.ParseFloat(os.Args[2], 64); err == nil && s > 0 {
			time.AfterFunc(time.Duration(s*float64(time.Second)), func() { os.Exit(0) })
		}
	}
	leakLoop()
}
