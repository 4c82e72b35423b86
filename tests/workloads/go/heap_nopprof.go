// heap_nopprof: a program that does not link runtime/pprof (net/http
// without net/http/pprof), so Go's linker turns its memory profiling off
// (runtime.disableMemoryProfiling; MemProfileRate starts at 0) and the
// runtime records no allocations unless the rate is set from outside. It
// keeps 32 MiB live from keepLive (512 objects of 64 KiB, allocated once)
// and allocates garbage from churn (16 objects of 16 KiB every 10 ms).
//
// Usage: heap_nopprof PORT [SECONDS]
//
//   - PORT: serves /rates on 127.0.0.1:PORT (0 picks a free port), which
//     answers `mem=<runtime.MemProfileRate> churned=<objects>`.
//   - SECONDS: exits (status 0) after that long; absent or 0, runs until
//     killed.
//
// Prints `port=<n>` first, then `ready live=33554432` once keepLive's
// memory is allocated.
package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

var (
	live    [512][]byte
	sink    []byte
	churned atomic.Int64
)

//go:noinline
func keepLive() {
	for i := range live {
		live[i] = make([]byte, 64<<10)
	}
}

//go:noinline
func churn() {
	for i := 0; i < 16; i++ {
		sink = make([]byte, 16<<10)
	}
	churned.Add(16)
}

func main() {
	port := "0"
	if len(os.Args) > 1 {
		port = os.Args[1]
	}
	listener, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	http.HandleFunc("/rates", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "mem=%d churned=%d\n", runtime.MemProfileRate, churned.Load())
	})
	go http.Serve(listener, nil)
	fmt.Printf("port=%d\n", listener.Addr().(*net.TCPAddr).Port)

	keepLive()
	fmt.Printf("ready live=%d\n", len(live)*len(live[0]))
	go func() {
		for {
			churn()
			time.Sleep(10 * time.Millisecond)
		}
	}()

	seconds := 0.0
	if len(os.Args) > 2 {
		if s, err := strconv.ParseFloat(os.Args[2], 64); err == nil {
			seconds = s
		}
	}
	if seconds > 0 {
		time.Sleep(time.Duration(seconds * float64(time.Second)))
		runtime.KeepAlive(live)
		return
	}
	select {}
}
