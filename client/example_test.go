package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/dcounter/dcounter/client"
)

// server stands in for a dcounter node in the examples: one counter,
// "likes", and the error answers the API gives.
func server() *httptest.Server {
	var mu sync.Mutex
	likes := int64(0)
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Header.Get("Authorization") == "Bearer wrong":
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"invalid bearer token"}`)
		case r.URL.Path == "/counters/likes/increment":
			likes += 5
			fmt.Fprintf(w, `{"key":"likes","value":%d}`, likes)
		case r.URL.Path == "/counters/likes":
			if r.Method == http.MethodDelete {
				likes = 0
				fmt.Fprint(w, `{"key":"likes","deleted":true}`)
				return
			}
			fmt.Fprintf(w, `{"key":"likes","value":%d}`, likes)
		case r.URL.Path == "/counters/likes/ttl":
			fmt.Fprintf(w, `{"key":"likes","value":%d,"ttl_ms":60000}`, likes)
		case r.URL.Path == "/counters/huge/increment":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"error":"increment or decrement would overflow"}`)
		case r.URL.Path == "/counters":
			fmt.Fprintf(w, `{"items":[{"key":"likes","value":%d}]}`, likes)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"key not found"}`)
		}
	}))
}

func Example() {
	srv := server()
	defer srv.Close()
	// Several endpoints: a request that cannot reach one goes to the next.
	c, err := client.New([]string{"http://127.0.0.1:1", srv.URL})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Add(ctx, "likes", 5); err != nil {
		log.Fatal(err)
	}
	got, err := c.Get(ctx, "likes")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Key, got.Value)
	// Output: likes 5
}

func ExampleClient_Add() {
	srv := server()
	defer srv.Close()
	c, _ := client.New([]string{srv.URL})
	// Retry-safe: the write carries a generated Idempotency-Key, reused if
	// it must be sent again, so it counts once.
	got, err := c.Add(context.Background(), "likes", 5)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.Value)
	// Output: 5
}

func ExampleClient_Add_overflow() {
	srv := server()
	defer srv.Close()
	c, _ := client.New([]string{srv.URL})
	_, err := c.Add(context.Background(), "huge", 1)
	fmt.Println(errors.Is(err, client.ErrOverflow), errors.Is(err, client.ErrBadRequest))
	// Output: true true
}

func ExampleClient_Add_outcomeUnknown() {
	c, _ := client.New([]string{"http://127.0.0.1:8080"})
	_, err := c.Add(context.Background(), "likes", 1)
	var e *client.Error
	if errors.Is(err, client.ErrOutcomeUnknown) && errors.As(err, &e) {
		// Retry later with the same key: it is applied at most once.
		_, err = c.Add(context.Background(), "likes", 1, client.WithIdempotencyKey(e.IdempotencyKey))
	}
	_ = err
}

func ExampleClient_SetTTL() {
	srv := server()
	defer srv.Close()
	c, _ := client.New([]string{srv.URL})
	got, err := c.SetTTL(context.Background(), "likes", time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(got.TTL)
	_, err = c.SetTTL(context.Background(), "gone", time.Minute)
	fmt.Println(errors.Is(err, client.ErrNotFound))
	// Output:
	// 1m0s
	// true
}

func ExampleClient_Delete() {
	srv := server()
	defer srv.Close()
	c, _ := client.New([]string{srv.URL})
	existed, err := c.Delete(context.Background(), "likes")
	fmt.Println(existed, err)
	// Output: true <nil>
}

func ExampleClient_List() {
	srv := server()
	defer srv.Close()
	c, _ := client.New([]string{srv.URL})
	opts := client.ListOptions{Prefix: "li", Limit: 100}
	for {
		page, err := c.List(context.Background(), opts)
		if err != nil {
			log.Fatal(err)
		}
		for _, it := range page.Items {
			fmt.Println(it.Key, it.Value)
		}
		if page.Next == "" {
			break
		}
		opts.Cursor = page.Next
	}
	// Output: likes 0
}

func ExampleWithToken() {
	srv := server()
	defer srv.Close()
	c, _ := client.New([]string{srv.URL}, client.WithToken("wrong"))
	_, err := c.Get(context.Background(), "likes")
	fmt.Println(errors.Is(err, client.ErrUnauthorized), strings.Contains(err.Error(), "invalid bearer token"))
	// Output: true true
}
