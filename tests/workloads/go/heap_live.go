// heap_live: keeps a known amount of memory live from a known function and
// allocates garbage from others, so a heap profile has known truth; it also
// contends a mutex and blocks on a channel all the time, so its mutex and
// block profiles fill as soon as their rates are set (both are 0 by
// default, and this program never sets them):
//
//	keepLive  32 MiB live for good: 512 objects of 64 KiB, allocated once
//	churn     garbage: 16 objects of 16 KiB every 10 ms, dropped at once
//	spreadA/B garbage: 512-byte objects from 2048 distinct stacks (11 calls
//	          deep, each through spreadA or spreadB), every 200 ms
//	holdLock  two goroutines take turns holding a sync.Mutex for 1 ms
//	waitTick  blocks receiving from a channel fed every 2 ms
//
// Usage: heap_live PORT [SECONDS]
//
//   - PORT: serves net/http/pprof (/debug/pprof/) on 127.0.0.1:PORT (0 picks
//     a free port), and /rates, which answers
//     `mem=<runtime.MemProfileRate> mutex=<SetMutexProfileFraction(-1)>
//     block_events=<events in the block profile>` (Go has no getter for the
//     block profile rate: the events grow only while it is above 0).
//   - SECONDS: exits (status 0) after that long; absent or 0, runs until
//     killed.
//
// Prints `port=<n>` first, then, once keepLive's memory is allocated and two
// GCs have published it in the heap profile,
// `ready live=33554432 objects=512 size=65536`.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"
)

const (
	liveObjects = 512
	liveSize    = 64 << 10
	spreadDepth = 11
)

var (
	// Not allocated by keepLive itself: only the objects count there.
	live [liveObjects][]byte
	// Garbage goes through here so the compiler keeps the allocations.
	sink []byte
	mu   sync.Mutex
)

//go:noinline
func keepLive() {
	for i := range live {
		live[i] = make([]byte, liveSize)
	}
}

//go:noinline
func churn() {
	for i := 0; i < 16; i++ {
		sink = make([]byte, 16<<10)
	}
}

//go:noinline
func spread(depth, path int) {
	if depth == 0 {
		sink = make([]byte, 512)
		return
	}
	if path&1 == 0 {
		spreadA(depth-1, path>>1)
	} else {
		spreadB(depth-1, path>>1)
	}
}

//go:noinline
func spreadA(depth, path int) { spread(depth, path) }

//go:noinline
func spreadB(depth, path int) { spread(depth, path) }

//go:noinline
func holdLock() {
	mu.Lock()
	time.Sleep(time.Millisecond)
	mu.Unlock()
}

//go:noinline
func waitTick(ticks <-chan struct{}) {
	<-ticks
}

// blockEvents is the number of blocking events the runtime's block
// profile has recorded (Go has no getter for the block profile rate: this
// grows only while it is above 0).
func blockEvents() int64 {
	n, _ := runtime.BlockProfile(nil)
	for {
		records := make([]runtime.BlockProfileRecord, n+64)
		got, ok := runtime.BlockProfile(records)
		if ok {
			var events int64
			for _, r := range records[:got] {
				events += r.Count
			}
			return events
		}
		n = got
	}
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
		fmt.Fprintf(w, "mem=%d mutex=%d block_events=%d\n", runtime.MemProfileRate,
			runtime.SetMutexProfileFraction(-1), blockEvents())
	})
	go http.Serve(listener, nil)
	fmt.Printf("port=%d\n", listener.Addr().(*net.TCPAddr).Port)

	keepLive()
	runtime.GC()
	runtime.GC()
	fmt.Printf("ready live=%d objects=%d size=%d\n", liveObjects*liveSize, liveObjects, liveSize)

	go func() {
		for {
			churn()
			time.Sleep(10 * time.Millisecond)
		}
	}()
	go func() {
		for {
			for path := 0; path < 1<<spreadDepth; path++ {
				spread(spreadDepth, path)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}()
	for i := 0; i < 2; i++ {
		go func() {
			for {
				holdLock()
			}
		}()
	}
	ticks := make(chan struct{})
	go func() {
		for {
			time.Sleep(2 * time.Millisecond)
			ticks <- struct{}{}
		}
	}()
	go func() {
		for {
			waitTick(ticks)
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
