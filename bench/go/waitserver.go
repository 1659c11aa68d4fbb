// waitserver: the Go side of scripts/bench_wait8k.sh — a net/http server whose handler waits
// 1 s on the request's context (or less if the client goes), then writes a short body. The
// sluice side is sluice-bench-server's GET /wait1s task route. Run with GOMAXPROCS=1 (one P,
// as sluice runs on one loop). Prints "listening on <addr>" once serving and exits on
// SIGINT/SIGTERM. Standard library only (built from source offline, GOPATH mode).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func wait1s(w http.ResponseWriter, r *http.Request) {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-t.C:
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("waited 1s\n"))
	case <-r.Context().Done():
		// The client went: nothing to write to.
	}
}

func main() {
	addr := flag.String("addr", "127.0.0.1", "address to listen on")
	port := flag.Int("port", 8080, "port (0 = any free one)")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/wait1s", wait1s)
	ln, err := net.Listen("tcp", fmt.Sprintf("%s:%d", *addr, *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "waitserver:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 75 * time.Second}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-stop
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	fmt.Printf("listening on %s\n", ln.Addr())
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "waitserver:", err)
		os.Exit(1)
	}
}
