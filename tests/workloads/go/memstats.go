// memstats: keeps a known amount of memory live and makes garbage steadily,
// so that garbage collections happen, and publishes the runtime's own view
// of its memory and GC (the truth a reader from outside is checked
// against):
//
//	live     64 slices of 1 MiB and 100,000 small objects (48 bytes each),
//	         kept until the program exits
//	garbage  small objects of 16 to 1,024 bytes and 32 KiB and 256 KiB
//	         buffers, about 100 MB a second, dropped at once (a GC every
//	         second or so)
//
// Usage: memstats PORT [SECONDS]
//
//   - PORT: serves on 127.0.0.1:PORT (0 picks a free port): net/http/pprof
//     (/debug/pprof/) and expvar (/debug/vars), where `memstats` is
//     runtime.ReadMemStats and this program adds
//     `threads` (runtime.ThreadCreateProfile(nil), what client_golang
//     reports as go_threads), `goroutines` (runtime.NumGoroutine()),
//     `version` (runtime.Version()) and `gcstats` (runtime/debug.ReadGCStats
//     with five pause quantiles, as client_golang asks for them: LastGC and
//     PauseTotal in nanoseconds, NumGC, PauseQuantiles in nanoseconds).
//     /pause stops the garbage (it answers `paused` once the garbage loop
//     is parked), /resume starts it again.
//   - SECONDS: exits (status 0) after that long; absent or 0, runs until
//     killed.
//
// Prints `port=<n>` (the port it listens on) as its first line, then
// `ready live=<bytes> objects=<n>` once the live memory is allocated.
package main

import (
	"expvar"
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"time"
)

const (
	bigSlices    = 64
	bigSize      = 1 << 20
	smallObjects = 100000
)

// A small live object (48 bytes: a size class of its own).
type node struct {
	next  *node
	value [5]uint64
}

var (
	// The live memory, reachable until the program exits.
	big   [][]byte
	small []*node

	// The last garbage, so that the compiler cannot drop the allocations.
	sink [16][]byte

	// The garbage loop holds gate while it allocates; /pause holds it
	// while paused.
	gate    sync.Mutex
	stateMu sync.Mutex
	paused  bool
)

// allocateLive makes the live memory.
//
//go:noinline
func allocateLive() {
	big = make([][]byte, bigSlices)
	for i := range big {
		big[i] = make([]byte, bigSize)
		for j := 0; j < bigSize; j += 4096 {
			big[i][j] = byte(i)
		}
	}
	small = make([]*node, smallObjects)
	for i := range small {
		small[i] = &node{value: [5]uint64{uint64(i)}}
		if i > 0 {
			small[i].next = small[i-1]
		}
	}
}

// makeGarbage allocates about 100 KB that is dropped at once.
//
//go:noinline
func makeGarbage(round int) {
	for i := 0; i < 64; i++ {
		sink[i%len(sink)] = make([]byte, 16+(round*37+i*61)%1009)
	}
	sink[round%len(sink)] = make([]byte, 32<<10)
	if round%4 == 0 {
		sink[(round+1)%len(sink)] = make([]byte, 256<<10)
	}
}

// garbageLoop makes garbage for ever, about a round a millisecond, unless
// paused.
func garbageLoop() {
	for round := 0; ; round++ {
		gate.Lock()
		makeGarbage(round)
		gate.Unlock()
		time.Sleep(time.Millisecond)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: memstats PORT [SECONDS]")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	expvar.Publish("threads", expvar.Func(func() any {
		n, _ := runtime.ThreadCreateProfile(nil)
		return n
	}))
	expvar.Publish("goroutines", expvar.Func(func() any {
		return runtime.NumGoroutine()
	}))
	expvar.Publish("version", expvar.Func(func() any {
		return runtime.Version()
	}))
	expvar.Publish("gcstats", expvar.Func(func() any {
		var stats debug.GCStats
		stats.PauseQuantiles = make([]time.Duration, 5)
		debug.ReadGCStats(&stats)
		quantiles := make([]int64, len(stats.PauseQuantiles))
		for i, q := range stats.PauseQuantiles {
			quantiles[i] = int64(q)
		}
		return map[string]any{
			"LastGC":         stats.LastGC.UnixNano(),
			"NumGC":          stats.NumGC,
			"PauseTotal":     int64(stats.PauseTotal),
			"PauseQuantiles": quantiles,
		}
	}))
	http.HandleFunc("/pause", func(w http.ResponseWriter, r *http.Request) {
		stateMu.Lock()
		if !paused {
			gate.Lock()
			paused = true
		}
		stateMu.Unlock()
		fmt.Fprintln(w, "paused")
	})
	http.HandleFunc("/resume", func(w http.ResponseWriter, r *http.Request) {
		stateMu.Lock()
		if paused {
			gate.Unlock()
			paused = false
		}
		stateMu.Unlock()
		fmt.Fprintln(w, "resumed")
	})
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)
	go http.Serve(ln, nil)
	if len(os.Args) > 2 {
		if s, err := strconv.ParseFloat(os.Args[2], 64); err == nil && s > 0 {
			time.AfterFunc(time.Duration(s*float64(time.Second)), func() { os.Exit(0) })
		}
	}
	allocateLive()
	fmt.Printf("ready live=%d objects=%d\n", bigSlices*bigSize+smallObjects*48, smallObjects)
	garbageLoop()
}
