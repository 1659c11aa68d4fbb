// The Go side of scripts/bench_db_pg.sh: select-by-primary-key queries/s from W goroutines
// sharing one *sql.DB (lib/pq) with C connections — the same load as bench/db_pg.c.
package main

import (
	"database/sql"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	_ "github.com/lib/pq"
)

func env(k string, d int) int {
	if v, err := strconv.Atoi(os.Getenv(k)); err == nil {
		return v
	}
	return d
}

func main() {
	workers, conns, secs, rows := env("WORKERS", 64), env("CONNS", 8), env("DURATION", 5), env("ROWS", 10000)
	db, err := sql.Open("postgres", os.Getenv("SLUICE_BENCH_PG_URL"))
	if err == nil {
		db.SetMaxOpenConns(conns)
		db.SetMaxIdleConns(conns)
		err = db.Ping()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbpg:", err)
		os.Exit(1)
	}
	stmt, err := db.Prepare("SELECT id, name FROM bench_users WHERE id = $1")
	if err != nil {
		fmt.Fprintln(os.Stderr, "dbpg:", err)
		os.Exit(1)
	}
	var ok, bad int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	start := time.Now()
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			r := rand.New(rand.NewSource(seed))
			var n, e int64
			for !stop.Load() {
				id := r.Int63n(int64(rows)) + 1
				var gotID int64
				var name string
				if err := stmt.QueryRow(id).Scan(&gotID, &name); err == nil && gotID == id {
					n++
				} else {
					e++
				}
			}
			atomic.AddInt64(&ok, n)
			atomic.AddInt64(&bad, e)
		}(int64(i + 1))
	}
	time.Sleep(time.Duration(secs) * time.Second)
	stop.Store(true)
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("| db_pg select by pk, Go database/sql + lib/pq (%d goroutines, %d conns) | %.0f | queries/s | errors %d |\n",
		workers, conns, float64(ok)/el, bad)
}
