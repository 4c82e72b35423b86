// goroutines: starts known numbers of goroutines, each parked for good in a
// //go:noinline function of its own, so a goroutine dump has known truth:
//
//	waitRecv   5  receive on a channel nobody sends on
//	waitSelect 4  select on two channels nobody sends on
//	waitMutex  3  sync.Mutex.Lock of a mutex main holds forever
//	waitSleep  2  time.Sleep(time.Hour)
//	waitNet    2  read from a loopback TCP connection nobody writes to
//	waitGroup  1  sync.WaitGroup.Wait that is never done
//	waitCond   1  sync.Cond.Wait that is never signalled
//
// Other goroutines: main (holds the mutex, then sleeps in time.Sleep or
// blocks in `select {}`), the HTTP server's and its connections', and the
// runtime's own.
//
// Usage: goroutines PORT [SECONDS]
//
//   - PORT: serves net/http/pprof (/debug/pprof/) on 127.0.0.1:PORT; 0 picks
//     a free port.
//   - SECONDS: exits (status 0) after that long; absent or 0, runs until
//     killed.
//
// Prints `port=<n>` (the port it listens on) as its first line, then, once
// every goroutine above is parked (checked in runtime.Stack's dump),
// `ready recv=5 select=4 mutex=3 sleep=2 net=2 waitgroup=1 cond=1`. If they
// are not all parked within 10 s it prints `error: ...` and exits 1.
package main

import (
	"fmt"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The waiting functions and how many goroutines wait in each, in the order
// of the `ready` line.
var waiters = []struct {
	fn, key string
	count   int
}{
	{"main.waitRecv", "recv", 5},
	{"main.waitSelect", "select", 4},
	{"main.waitMutex", "mutex", 3},
	{"main.waitSleep", "sleep", 2},
	{"main.waitNet", "net", 2},
	{"main.waitGroup", "waitgroup", 1},
	{"main.waitCond", "cond", 1},
}

//go:noinline
func waitRecv(ch chan int) {
	<-ch
}

//go:noinline
func waitSelect(a, b chan int) {
	select {
	case <-a:
	case <-b:
	}
}

//go:noinline
func waitMutex(mu *sync.Mutex) {
	mu.Lock()
	mu.Unlock()
}

//go:noinline
func waitSleep() {
	time.Sleep(time.Hour)
}

//go:noinline
func waitNet(conn net.Conn) {
	buf := make([]byte, 1)
	conn.Read(buf)
}

//go:noinline
func waitGroup(wg *sync.WaitGroup) {
	wg.Wait()
}

//go:noinline
func waitCond(cond *sync.Cond) {
	cond.L.Lock()
	cond.Wait()
	cond.L.Unlock()
}

// accepted keeps the server ends of waitNet's connections reachable: a
// connection only a local variable held would be closed by its finalizer
// after a GC, and the readers would return.
var accepted []net.Conn

// parked counts, per waiting function, the goroutines whose stack has it
// and that are parked (not running, runnable or in a system call).
func parked() map[string]int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	counts := map[string]int{}
	for _, g := range strings.Split(string(buf), "\n\n") {
		header := strings.SplitN(g, "\n", 2)[0]
		open, end := strings.Index(header, "["), strings.Index(header, "]")
		if open < 0 || end < open {
			continue
		}
		state := header[open+1 : end]
		if strings.HasPrefix(state, "running") || strings.HasPrefix(state, "runnable") ||
			strings.HasPrefix(state, "syscall") {
			continue
		}
		for _, w := range waiters {
			if strings.Contains(g, "\n"+w.fn+"(") {
				counts[w.fn]++
			}
		}
	}
	return counts
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: goroutines PORT [SECONDS]")
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "listen:", err)
		os.Exit(1)
	}
	fmt.Printf("port=%d\n", ln.Addr().(*net.TCPAddr).Port)
	go http.Serve(ln, nil)

	never := make(chan int)
	for i := 0; i < 5; i++ {
		go waitRecv(never)
	}
	a, b := make(chan int), make(chan int)
	for i := 0; i < 4; i++ {
		go waitSelect(a, b)
	}
	var mu sync.Mutex
	mu.Lock() // held by main forever
	for i := 0; i < 3; i++ {
		go waitMutex(&mu)
	}
	for i := 0; i < 2; i++ {
		go waitSleep()
	}
	// Two loopback connections; the accepted ends are kept open and never
	// written to.
	quiet, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error: listen:", err)
		os.Exit(1)
	}
	for i := 0; i < 2; i++ {
		conn, err := net.Dial("tcp", quiet.Addr().String())
		if err != nil {
			fmt.Println("error: dial:", err)
			os.Exit(1)
		}
		other, err := quiet.Accept()
		if err != nil {
			fmt.Println("error: accept:", err)
			os.Exit(1)
		}
		accepted = append(accepted, other)
		go waitNet(conn)
	}
	var wg sync.WaitGroup
	wg.Add(1) // never done
	go waitGroup(&wg)
	cond := sync.NewCond(&sync.Mutex{})
	go waitCond(cond)

	deadline := time.Now().Add(10 * time.Second)
	for {
		counts := parked()
		done := true
		for _, w := range waiters {
			done = done && counts[w.fn] == w.count
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			fmt.Printf("error: not all goroutines parked within 10 s: %v\n", counts)
			os.Exit(1)
		}
		time.Sleep(10 * time.Millisecond)
	}
	line := "ready"
	for _, w := range waiters {
		line += fmt.Sprintf(" %s=%d", w.key, w.count)
	}
	fmt.Println(line)

	if len(os.Args) > 2 {
		if s, err := strconv.ParseFloat(os.Args[2], 64); err == nil && s > 0 {
			time.Sleep(time.Duration(s * float64(time.Second)))
			os.Exit(0)
		}
	}
	runtime.KeepAlive(accepted)
	select {}
}
