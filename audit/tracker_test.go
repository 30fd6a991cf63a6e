package audit_test

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/dbproxy/dbproxy/audit"
	"github.com/dbproxy/dbproxy/fieldcrypt"
	"github.com/dbproxy/dbproxy/proxy"
	"github.com/dbproxy/dbproxy/rules"
)

type capture struct {
	mu     sync.Mutex
	events []audit.Event
}

func (c *capture) Emit(e audit.Event) {
	c.mu.Lock()
	c.events = append(c.events, e)
	c.mu.Unlock()
}

func (c *capture) types() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.events {
		out = append(out, e.Type)
	}
	return out
}

func TestTracker(t *testing.T) {
	var c capture
	tr := audit.NewTracker(&c, 0)
	defer tr.Close()
	p := proxy.Principal{Listener: "pg", SessionID: 7, User: "app", Database: "shop",
		Client: netip.MustParseAddrPort("10.0.0.1:5000")}
	end := tr.Login(p, nil, true)
	col := &rules.ColumnRule{Schema: "public", Table: "users", Column: "email", Key: "k"}
	use := func(op fieldcrypt.Op, v uint32, n int, err error) {
		tr.KeyUsed(context.Background(), fieldcrypt.Use{Access: fieldcrypt.Access{Principal: p, Op: op, Column: col},
			KeyVersion: v, Versions: 1, Bytes: n, Err: err})
	}
	use(fieldcrypt.OpEncrypt, 1, 10, nil)
	use(fieldcrypt.OpEncrypt, 1, 12, nil)
	use(fieldcrypt.OpDecrypt, 1, 10, nil)
	use(fieldcrypt.OpDecrypt, 2, 10, nil)
	use(fieldcrypt.OpDecrypt, 0, -1, &fieldcrypt.RefusedError{Op: fieldcrypt.OpDecrypt, Column: col, Err: errors.New("not allowed")})
	tr.Summarize()
	tr.Summarize() // nothing new: no event
	use(fieldcrypt.OpDecrypt, 2, 5, nil)
	end()
	end()
	want := []string{"login", "first_use", "first_use", "first_use", "denied", "session_summary", "session_end"}
	if got := c.types(); len(got) != len(want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	for i, w := range want {
		if c.events[i].Type != w {
			t.Fatalf("events %v, want %v", c.types(), want)
		}
	}
	sum := c.events[5]
	if sum.Principal.Client != "10.0.0.1:5000" || sum.Principal.User != "app" || len(sum.Columns) != 2 {
		t.Fatalf("summary %+v", sum)
	}
	dec, enc := sum.Columns[0], sum.Columns[1]
	if enc.Op != "encrypt" || enc.Values != 2 || enc.Bytes != 22 || dec.Values != 2 || dec.Refused != 1 || dec.Version != 2 {
		t.Fatalf("summary columns %+v", sum.Columns)
	}
	if d := c.events[4]; d.Error != "not allowed" || d.Column != "public.users.email" || d.Op != "decrypt" {
		t.Fatalf("denied %+v", d)
	}
	if e := c.events[6]; len(e.Columns) != 1 || e.Columns[0].Values != 1 {
		t.Fatalf("session_end %+v", e)
	}
}

func TestTrackerLoginRefused(t *testing.T) {
	var c capture
	tr := audit.NewTracker(&c, 0)
	tr.Login(proxy.Principal{Listener: "my", SessionID: 1, User: "u"}, errors.New("no catalog"), true)()
	if len(c.events) != 1 || c.events[0].Outcome != "refused" || c.events[0].Error != "no catalog" {
		t.Fatalf("events %+v", c.events)
	}
}

// BenchmarkTrackerKeyUsed is the per-value cost of the audit Monitor in a
// session after its first uses.
//
//	go test -run '^$' -bench TrackerKeyUsed -benchmem ./audit/
func BenchmarkTrackerKeyUsed(b *testing.B) {
	var c capture
	tr := audit.NewTracker(&c, 0)
	p := proxy.Principal{Listener: "pg", SessionID: 7, User: "app"}
	defer tr.Login(p, nil, true)()
	col := &rules.ColumnRule{Schema: "public", Table: "users", Column: "email", Key: "k"}
	u := fieldcrypt.Use{Access: fieldcrypt.Access{Principal: p, Op: fieldcrypt.OpDecrypt, Column: col}, KeyVersion: 1, Versions: 1, Bytes: 20}
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tr.KeyUsed(ctx, u)
		}
	})
}
