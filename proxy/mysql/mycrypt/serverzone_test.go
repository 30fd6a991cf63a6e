package mycrypt_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// fakeZones answers ServerTimeZone and counts the calls.
type fakeZones struct {
	zone, system string
	err          error
	calls        atomic.Int32
}

func (f *fakeZones) ServerTimeZone(context.Context) (string, string, error) {
	f.calls.Add(1)
	return f.zone, f.system, f.err
}

// TestServerTimeZone: sessions start in the server's default time_zone
// when a ZoneSource gives it, so a timestamptz literal means the same
// instant as on the server: 12:00 at +02:00 encrypts exactly as 10:00 in a
// UTC session (deterministic key). A zone the proxy cannot follow refuses
// timestamptz values; a source that fails leaves sessions in UTC.
func TestServerTimeZone(t *testing.T) {
	m, err := crypto.NewRandomKeyMaterial(crypto.AlgorithmAESSIV)
	if err != nil {
		t.Fatal(err)
	}
	k, err := crypto.NewKey("det", 1, crypto.AlgorithmAESSIV, m)
	if err != nil {
		t.Fatal(err)
	}
	keys := memKeys{"det": k}
	specs := []rules.Spec{{Table: "events", Column: "at", Key: "det", Mode: rules.ModeDeterministic, Type: value.TypeTimestamptz}}
	forward := func(t *testing.T, src mycrypt.ZoneSource, specs []rules.Spec, sql string) ([]byte, error) {
		t.Helper()
		set, err := rules.New(rules.DialectMySQL, specs)
		if err != nil {
			t.Fatal(err)
		}
		opts := mycrypt.Options{Rules: set, Keys: keys}
		if src != nil {
			opts.Zones = src
		}
		ic, err := mycrypt.New(opts)
		if err != nil {
			t.Fatal(err)
		}
		h, err := ic.NewSession(context.Background(), mysql.SessionInfo{Database: "app", Charset: 45, ServerVersion: "5.5.5-10.11.6-MariaDB"})
		if err != nil {
			t.Fatal(err)
		}
		var w mysql.Writer
		err = h.Command(&mysql.Exchange{Command: gomysql.COM_QUERY}, query(sql), &w)
		return w.Bytes(), err
	}
	const insert = "INSERT INTO events (at) VALUES ('2024-01-01 %s')"
	utc, err := forward(t, nil, specs, strings.Replace(insert, "%s", "10:00:00", 1))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, zone, system string
		srcErr             error
	}{
		{"offset", "+02:00", "UTC", nil},
		{"named", "Europe/Paris", "UTC", nil}, // CET in January: +01:00, see below
		{"system", "SYSTEM", "Etc/GMT-2", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := &fakeZones{zone: tc.zone, system: tc.system}
			local := "12:00:00"
			if tc.zone == "Europe/Paris" {
				local = "11:00:00"
			}
			got, err := forward(t, src, specs, strings.Replace(insert, "%s", local, 1))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(utc) {
				t.Fatalf("%s in %s/%s did not encrypt as 10:00 UTC", local, tc.zone, tc.system)
			}
			if src.calls.Load() != 1 {
				t.Fatalf("ServerTimeZone called %d times, want 1", src.calls.Load())
			}
		})
	}
	t.Run("unknown zone refuses timestamptz", func(t *testing.T) {
		_, err := forward(t, &fakeZones{zone: "SYSTEM", system: "SYSTEM"}, specs, strings.Replace(insert, "%s", "10:00:00", 1))
		var me *mysql.Error
		if !errors.As(err, &me) || !strings.Contains(me.Message, "time_zone") {
			t.Fatalf("got %v, want a refusal naming time_zone", err)
		}
	})
	t.Run("source failing keeps UTC", func(t *testing.T) {
		got, err := forward(t, &fakeZones{err: errors.New("no route")}, specs, strings.Replace(insert, "%s", "10:00:00", 1))
		if err != nil || string(got) != string(utc) {
			t.Fatalf("got %v, want the UTC encryption", err)
		}
	})
	t.Run("not asked without timestamptz columns", func(t *testing.T) {
		src := &fakeZones{zone: "+02:00"}
		textSpecs := []rules.Spec{{Table: "events", Column: "note", Key: "det", Mode: rules.ModeDeterministic, Type: value.TypeText}}
		if _, err := forward(t, src, textSpecs, "INSERT INTO events (note) VALUES ('x')"); err != nil {
			t.Fatal(err)
		}
		if src.calls.Load() != 0 {
			t.Fatalf("ServerTimeZone called %d times for rules without timestamptz", src.calls.Load())
		}
	})
}
