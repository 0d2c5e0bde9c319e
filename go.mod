module github.com/dcounter/dcounter

go 1.26.8

require (
	github.com/klauspost/compress v1.20.3
	github.com/vmihailenco/msgpack/v5 v5.4.1
)

require (
	github.com/prometheus/client_golang v1.25.0 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
)
