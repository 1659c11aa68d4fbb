// taskbench: the Go side of bench/task.c — the same questions asked of goroutines, printed as
// the same Markdown rows. Built from source by scripts/bench_task_go.sh in the same run
// (GOPATH mode, standard library only, offline).
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

const reps = 5

var scale = 1.0

func scaled(n int) int {
	v := int(float64(n) * scale)
	if v < 1 {
		v = 1
	}
	return v
}

// best of the runs, as bench/task.c reports: interference only ever adds time.
func best(v []float64) float64 {
	sort.Float64s(v)
	return v[0]
}

func row(name string, v float64, unit, note string) {
	fmt.Printf("| go: %s | %.1f | %s | %s |\n", name, v, unit, note)
}

func rssKB() int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		l := s.Text()
		if strings.HasPrefix(l, "VmRSS:") {
			n, _ := strconv.Atoi(strings.Fields(l)[1])
			return n
		}
	}
	return -1
}

// Gosched between two goroutines on one P: two switches per round.
func switchCost() float64 {
	prev := runtime.GOMAXPROCS(1)
	defer runtime.GOMAXPROCS(prev)
	n := scaled(2000000)
	var wg sync.WaitGroup
	wg.Add(2)
	t0 := time.Now()
	for g := 0; g < 2; g++ {
		go func() {
			for i := 0; i < n; i++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return float64(time.Since(t0).Nanoseconds()) / float64(2*n)
}

func spawn() float64 {
	const batch = 1000
	batches := scaled(300000) / batch
	t0 := time.Now()
	for b := 0; b < batches; b++ {
		var wg sync.WaitGroup
		wg.Add(batch)
		for i := 0; i < batch; i++ {
			go func() { wg.Done() }()
		}
		wg.Wait()
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(batches*batch)
}

func herd() (float64, float64) {
	const n = 100000
	runtime.GC()
	before := rssKB()
	gate := make(chan struct{})
	var arrived, done sync.WaitGroup
	arrived.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			arrived.Done()
			<-gate
			done.Done()
		}()
	}
	arrived.Wait()
	after := rssKB()
	t0 := time.Now()
	close(gate)
	done.Wait()
	wake := float64(time.Since(t0).Nanoseconds()) / n
	return float64(after-before) * 1024 / n, wake
}

func pingPong(procs int) float64 {
	prev := runtime.GOMAXPROCS(procs)
	defer runtime.GOMAXPROCS(prev)
	n := scaled(500000)
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	t0 := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		<-pong
	}
	d := time.Since(t0)
	close(ping)
	return float64(d.Nanoseconds()) / float64(2*n)
}

func main() {
	if s := os.Getenv("BENCH_TASK_N"); s != "" {
		if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
			scale = f
		}
	}
	runtime.GOMAXPROCS(2)
	v := make([]float64, reps)
	for i := range v {
		v[i] = switchCost()
	}
	row("goroutine switch (Gosched)", best(v), "ns", "GOMAXPROCS=1, one way")
	for i := range v {
		v[i] = spawn()
	}
	row("spawn+exit+wg", best(v), "ns/task", "batches of 1000, GOMAXPROCS=2")
	rss, wake := herd()
	row("parked goroutine RSS", rss, "bytes", "100k parked, RSS growth / 100k")
	row("wake parked", wake, "ns/task", "100k woken by close(chan) until all exited")
	for i := range v {
		v[i] = pingPong(1)
	}
	row("ping-pong, one P", best(v), "ns/message", "unbuffered chans, GOMAXPROCS=1")
	for i := range v {
		v[i] = pingPong(2)
	}
	row("ping-pong, two Ps", best(v), "ns/message", "unbuffered chans, GOMAXPROCS=2")
}
