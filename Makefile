# dbproxy developer entry points. `make test` is the test command CI runs.
GO ?= go
LOCAL_KMS_VERSION := v0.0.0-20260228092603-2a5e92d09ab6
TESTBIN ?= $(shell $(GO) env GOCACHE)/dbproxy-testbin

.PHONY: build test testbin vet fuzz bench demo clean

build:
	$(GO) build -o bin/dbproxy ./cmd/dbproxy

# Unit and integration tests. Integration tests start throwaway PostgreSQL,
# MariaDB and local-kms servers themselves (see internal/testenv).
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...

testbin:
	GOBIN=$(TESTBIN) GOFLAGS=-mod=mod $(GO) install github.com/nsmithuk/local-kms@$(LOCAL_KMS_VERSION)

vet:
	gofmt -l . | (! grep .)
	$(GO) vet ./...

bench:
	$(GO) test -run XXX -bench . -benchmem ./crypto/...

fuzz:
	$(GO) test -run XXX -fuzz FuzzDecrypt -fuzztime 3m ./crypto/
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime 3m ./config/
	$(GO) test -run XXX -fuzz FuzzCanonicalText -fuzztime 3m ./value/

clean:
	rm -rf bin
