# dbproxy developer entry points. `make test` is the test command CI runs.
GO ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)

.PHONY: build test vet lint fuzz bench demo clean driver-suites reliability

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o bin/dbproxy ./cmd/dbproxy

# Unit and integration tests. Integration tests start throwaway PostgreSQL,
# MariaDB and local-kms (AWS KMS API) servers themselves (see internal/testenv;
# local-kms is built on first use with go install, pinned).
test:
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 25m ./...

# The drivers' own test suites (pgx v5, go-sql-driver/mysql) directly,
# through a plain and through an encrypting listener; fails if a listener
# changes which tests pass (scripts/driver-suites.sh; about 7 minutes on 2
# cores with a warm build cache, a few more the first time).
driver-suites:
	scripts/driver-suites.sh

# The long reliability suite (README, "Reliability suite"): faults between
# dbproxy and the databases under concurrent writers, 2,000 stalled
# handshakes per protocol, 5,000 idle connections per protocol. Writes its
# tables to reliability-report.md. A reduced version runs in `make test`.
reliability:
	rm -f reliability-report.md
	DBPROXY_RELIABILITY=1 DBPROXY_RELIABILITY_REPORT=reliability-report.md \
		$(GO) test -count=1 -timeout 60m -v -run 'Reliability|TestRSS|TestReloadReleasesResources' ./integration/

vet:
	gofmt -l . | (! grep .)
	$(GO) vet ./...

# gofmt, go vet and staticcheck (pinned, fetched through the module proxy).
lint: vet
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

bench:
	$(GO) test -run XXX -bench . -benchmem ./crypto/...

fuzz:
	$(GO) test -run XXX -fuzz FuzzDecrypt -fuzztime 3m ./crypto/
	$(GO) test -run XXX -fuzz FuzzParse -fuzztime 3m ./config/
	$(GO) test -run XXX -fuzz FuzzCanonicalText -fuzztime 3m ./value/

# No-Docker quickstart: throwaway PostgreSQL + MariaDB + dbproxy.
demo:
	scripts/demo.sh

clean:
	rm -rf bin
