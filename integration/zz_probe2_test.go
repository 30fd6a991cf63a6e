package integration

import "regexp"

var latencyRe = regexp.MustCompile(`latency average = ([0-9.]+ ms)`)

func latency(out string) string { return latencyRe.FindString(out) }
