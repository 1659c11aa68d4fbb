// httpclient: Go's http.Client doing what bench_client does — C goroutines looping GET on one
// shared client for a fixed time — so scripts/bench_client.sh can print both side by side.
// Prints the same Markdown rows. Standard library only (built offline, GOPATH mode).
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	url := flag.String("url", "", "URL to GET")
	callers := flag.Int("callers", 64, "concurrent goroutines")
	seconds := flag.Int("seconds", 3, "duration")
	perHost := flag.Int("max-conns-per-host", 64, "MaxConnsPerHost and MaxIdleConnsPerHost")
	flag.Parse()
	var dials int64
	d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			atomic.AddInt64(&dials, 1)
			return d.DialContext(ctx, network, addr)
		},
		MaxIdleConns:        *perHost + 8,
		MaxIdleConnsPerHost: *perHost,
		MaxConnsPerHost:     *perHost,
	}
	client := &http.Client{Transport: tr}
	until := time.Now().Add(time.Duration(*seconds) * time.Second)
	var ok, errs int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < *callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(until) {
				req, _ := http.NewRequestWithContext(context.Background(), "GET", *url, nil)
				resp, err := client.Do(req)
				if err != nil {
					atomic.AddInt64(&errs, 1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 {
					atomic.AddInt64(&ok, 1)
				} else {
					atomic.AddInt64(&errs, 1)
				}
			}
		}()
	}
	wg.Wait()
	secs := time.Since(t0).Seconds()
	fmt.Printf("| Go http.Client GET, %d goroutines (external server) | %.0f | req/s | %d errors |\n",
		*callers, float64(ok)/secs, errs)
	fmt.Printf("| Go http.Client TCP connections opened | %d | conns | per-host limit %d |\n",
		dials, *perHost)
	if errs > 0 {
		os.Exit(1)
	}
}
