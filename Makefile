# make run    migrate and walk through the CLI in development mode (scripts/run.sh)
# make test   the whole suite, provisioning PostgreSQL if needed (scripts/test.sh)
# make build  the binary, into bin/selfreset
# make bench  the benchmarks (needs PostgreSQL like the tests)

.PHONY: run test build bench

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh

build:
	go build -o bin/selfreset ./cmd/selfreset

bench:
	go test -bench . -run '^$$' ./...
