# syntax=docker/dockerfile:1
# Multi-stage build of dbproxy. cgo is on: the PostgreSQL SQL parser
# (pg_query_go) is the real PostgreSQL grammar in C.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# docker build --build-arg VERSION=$(git describe --always) --build-arg COMMIT=$(git rev-parse HEAD) .
ARG VERSION=dev
ARG COMMIT=
RUN CGO_ENABLED=1 go build -trimpath -ldflags "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}" -o /out/dbproxy ./cmd/dbproxy

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/dbproxy dbproxy \
    && mkdir -p /etc/dbproxy /var/lib/dbproxy && chown dbproxy /var/lib/dbproxy
COPY --from=build /out/dbproxy /usr/local/bin/dbproxy
USER dbproxy
WORKDIR /var/lib/dbproxy
ENV DBPROXY_CONFIG=/etc/dbproxy/dbproxy.yaml
EXPOSE 6432 3307
ENTRYPOINT ["/usr/local/bin/dbproxy"]
CMD ["serve"]
