package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/dbproxy/dbproxy/migrate"
)

// progressInterval is how often plain progress lines are written.
const progressInterval = 2 * time.Second

// progressSink shows a migration's progress: a bar on a terminal, a line
// every progressInterval otherwise, one JSON object per update with
// --json (on stdout, for automation).
type progressSink struct {
	e      env
	asJSON bool
	tty    bool
	bar    *progressbar.ProgressBar
	phase  string
	start  time.Time // of the current phase
	from   int64     // rows done when the phase started
	last   time.Time // of the last plain line
}

func newProgressSink(e env, asJSON bool) *progressSink {
	f, ok := e.stderr.(*os.File)
	return &progressSink{e: e, asJSON: asJSON, tty: ok && term.IsTerminal(int(f.Fd()))}
}

func (p *progressSink) update(pr migrate.Progress) {
	now := time.Now()
	newPhase := pr.Phase != p.phase
	if newPhase {
		p.finish()
		p.phase, p.start, p.from = pr.Phase, now, pr.Done
	}
	if p.asJSON {
		_ = json.NewEncoder(p.e.stdout).Encode(struct {
			migrate.Progress
			Time string `json:"time"`
		}{pr, now.UTC().Format(time.RFC3339Nano)})
		return
	}
	if p.tty {
		if p.bar == nil {
			p.bar = progressbar.NewOptions64(max(pr.Total, 1), progressbar.OptionSetWriter(p.e.stderr),
				progressbar.OptionSetDescription(fmt.Sprintf("%s %s: %s", pr.Op, pr.Table, pr.Phase)),
				progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("rows"),
				progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish())
		}
		_ = p.bar.Set64(min(pr.Done, max(pr.Total, 1)))
		return
	}
	if newPhase || now.Sub(p.last) >= progressInterval {
		p.last = now
		fmt.Fprintln(p.e.stderr, progressLine(pr, now.Sub(p.start), pr.Done-p.from))
	}
}

// progressLine is a plain progress line: rows done of total, rate, ETA.
func progressLine(pr migrate.Progress, elapsed time.Duration, rows int64) string {
	s := fmt.Sprintf("%s %s: %s %d/%d rows", pr.Op, pr.Table, pr.Phase, pr.Done, pr.Total)
	if pr.Total > 0 {
		s += fmt.Sprintf(" (%d%%)", min(100, pr.Done*100/pr.Total))
	}
	if secs := elapsed.Seconds(); secs > 0 && rows > 0 {
		rate := float64(rows) / secs
		s += fmt.Sprintf(", %.0f rows/s", rate)
		if left := pr.Total - pr.Done; left > 0 {
			s += fmt.Sprintf(", ETA %s", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	return s
}

// finish ends the bar of the current phase.
func (p *progressSink) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}
