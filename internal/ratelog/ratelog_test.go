package ratelog_test

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/dbproxy/dbproxy/internal/ratelog"
	"github.com/dbproxy/dbproxy/internal/testlog"
)

func count(lines []string, sub string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

// TestBurstThenRate: 1,000 identical records in one instant give the
// burst; one more passes per interval; the summary counts the rest; a
// different message has its own bucket; derived loggers share buckets and
// keep their attributes.
func TestBurstThenRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var buf testlog.Buffer
		inner := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})
		log := slog.New(ratelog.New(inner, ratelog.Options{Burst: 10, Interval: time.Second, Report: 10 * time.Second})).
			With(slog.String("listener", "pg"))
		for i := range 1000 {
			log.With(slog.Int("i", i)).Warn("connection refused")
		}
		log.Warn("other message")
		lines := buf.Lines()
		if n := count(lines, "msg=\"connection refused\""); n != 10 {
			t.Fatalf("%d lines passed in the burst, want 10:\n%s", n, strings.Join(lines, "\n"))
		}
		if n := count(lines, "other message"); n != 1 {
			t.Fatalf("other message: %d lines, want 1", n)
		}
		if count(lines, "listener=pg") != len(lines) {
			t.Fatalf("attributes lost:\n%s", strings.Join(lines, "\n"))
		}

		// 5 seconds at 100 records a second: about one passes per second.
		for range 500 {
			time.Sleep(10 * time.Millisecond)
			log.Warn("connection refused")
		}
		lines = buf.Lines()
		if n := count(lines, "msg=\"connection refused\""); n < 14 || n > 16 {
			t.Fatalf("%d lines after 5 s at the rate, want 15", n)
		}
		passed := count(lines, "msg=\"connection refused\"")

		// The summary comes within the report period and counts all that
		// were held back.
		time.Sleep(10 * time.Second)
		synctest.Wait()
		lines = buf.Lines()
		var total int
		for _, l := range lines {
			if strings.Contains(l, ratelog.SuppressedMessage) {
				if !strings.Contains(l, "message=\"connection refused\"") || !strings.Contains(l, "level=WARN") {
					t.Fatalf("summary line %q", l)
				}
				n, err := summaryCount(l)
				if err != nil {
					t.Fatal(err)
				}
				total += n
			}
		}
		if want := 1500 - passed; total != want {
			t.Fatalf("summaries count %d held back, want %d:\n%s", total, want, strings.Join(lines, "\n"))
		}

		// Quiet for a while: the bucket refills and a burst passes again;
		// no summary without anything held back.
		before := len(buf.Lines())
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := len(buf.Lines()); n != before {
			t.Fatalf("%d lines logged while quiet", n-before)
		}
		for range 10 {
			log.Warn("connection refused")
		}
		if n := len(buf.Lines()) - before; n != 10 {
			t.Fatalf("%d lines after the refill, want 10", n)
		}
	})
}

// summaryCount reads the count=N attribute of a summary line.
func summaryCount(line string) (int, error) {
	_, rest, ok := strings.Cut(line, "count=")
	if !ok {
		return 0, fmt.Errorf("no count= in %q", line)
	}
	rest, _, _ = strings.Cut(rest, " ")
	return strconv.Atoi(rest)
}

// TestLevelsAreSeparate: the inner handler's level still filters, and the
// same message at two levels has two buckets.
func TestLevelsAreSeparate(t *testing.T) {
	var buf testlog.Buffer
	inner := slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})
	log := slog.New(ratelog.New(inner, ratelog.Options{Burst: 1}))
	log.Debug("m")
	log.Info("m")
	log.Info("m")
	log.Warn("m")
	lines := buf.Lines()
	if len(lines) != 2 || !strings.Contains(lines[0], "INFO") || !strings.Contains(lines[1], "WARN") {
		t.Fatalf("lines %q", lines)
	}
}
