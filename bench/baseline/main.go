// Command baseline is the yardstick for dcounter's HTTP benchmarks: the
// smallest reasonable Go net/http counter, with the same routes and JSON
// answers as a dcounter node but no replication, validation or durability.
package main

import (
	"flag"
	"log"
	"net/http"
	"strconv"
	"sync/atomic"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9090", "listen address")
	flag.Parse()
	var n atomic.Int64
	reply := func(w http.ResponseWriter, v int64) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"key":"default","value":` + strconv.FormatInt(v, 10) + "}\n"))
	}
	http.HandleFunc("POST /increment", func(w http.ResponseWriter, r *http.Request) { reply(w, n.Add(1)) })
	http.HandleFunc("GET /counter", func(w http.ResponseWriter, r *http.Request) { reply(w, n.Load()) })
	log.Fatal(http.ListenAndServe(*addr, nil))
}
