package keystore_test

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dbproxy/dbproxy/crypto/keystore"
	"github.com/dbproxy/dbproxy/internal/testenv"
	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// server is one test database: a DSN without the password, and the
// password to pass separately (as the CLI does from password_env).
type server struct {
	dsn, password  string
	checksPassword bool // the server rejects a wrong password
	// killSessions, if set, terminates the keystore's server sessions.
	killSessions func(t *testing.T)
}

func postgresServer(t *testing.T) server {
	pg := testenv.StartPostgres(t, testenv.PGOptions{Auth: "scram-sha-256"})
	u, err := url.Parse(pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.User(pg.User)
	kill := func(t *testing.T) {
		ctx := context.Background()
		su, err := pgx.Connect(ctx, pg.Superuser().DSN())
		if err != nil {
			t.Fatal(err)
		}
		defer su.Close(ctx)
		var n int
		err = su.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'dbproxy-keystore' AND datname = $1`, pg.Database).Scan(&n)
		if err != nil || n == 0 {
			t.Fatalf("terminated %d keystore sessions: %v", n, err)
		}
	}
	return server{dsn: u.String(), password: pg.Password, checksPassword: pg.Auth != "" && pg.Auth != "trust", killSessions: kill}
}

func mariaDBServer(t *testing.T) server {
	m := testenv.StartMariaDB(t)
	return server{dsn: fmt.Sprintf("mysql://%s@tcp(%s)/%s", m.User, m.Addr(), m.Database), password: m.Password, checksPassword: true}
}

var tableSeq atomic.Int64

// databaseBacking returns a backing that gives each caller a new table on srv.
func databaseBacking(srv server) backing {
	return func(t *testing.T) func() keystore.Store {
		table := fmt.Sprintf("ks_test_%d", tableSeq.Add(1))
		return func() keystore.Store {
			s, err := keystore.OpenDatabase(context.Background(), srv.dsn, srv.password, table, nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
}

func TestDatabase(t *testing.T) {
	servers := []struct {
		name  string
		start func(t *testing.T) server
	}{
		{"postgres", postgresServer},
		{"mariadb", mariaDBServer},
	}
	for _, sv := range servers {
		t.Run(sv.name, func(t *testing.T) {
			srv := sv.start(t)
			t.Run("conformance", func(t *testing.T) { testConformance(t, databaseBacking(srv)) })
			t.Run("delete", func(t *testing.T) { testDelete(t, databaseBacking(srv)) })
			t.Run("open rejects", func(t *testing.T) { testOpenDatabaseRejects(t, srv) })
			t.Run("concurrent open", func(t *testing.T) { testConcurrentOpen(t, srv) })
			if srv.killSessions != nil {
				t.Run("reconnect", func(t *testing.T) { testReconnect(t, srv) })
			}
		})
	}
}

func testOpenDatabaseRejects(t *testing.T, srv server) {
	ctx := context.Background()
	for _, table := range []string{"a-b", "a;drop table x", "1abc", `a"b`, "a`b", "schema.table", strings.Repeat("t", 64)} {
		t.Run("table "+table, func(t *testing.T) {
			s, err := keystore.OpenDatabase(ctx, srv.dsn, srv.password, table, nil)
			if err == nil {
				s.Close()
				t.Fatal("OpenDatabase accepted the table name")
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		if !srv.checksPassword {
			t.Skip("the external server does not say it checks passwords")
		}
		const pw = "Wr0ng-Pa55word-Marker"
		s, err := keystore.OpenDatabase(ctx, srv.dsn, pw, "ks_wrong_pw", nil)
		if err == nil {
			s.Close()
			t.Fatal("OpenDatabase accepted a wrong password")
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), srv.password) {
			t.Errorf("error reveals a password: %v", err)
		}
	})
	t.Run("scheme", func(t *testing.T) {
		_, err := keystore.OpenDatabase(ctx, strings.Replace(srv.dsn, "://", "x://", 1), srv.password, "", nil)
		if err == nil {
			t.Fatal("OpenDatabase accepted an unknown scheme")
		}
	})
	t.Run("default table", func(t *testing.T) {
		s, err := keystore.OpenDatabase(ctx, srv.dsn, srv.password, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.List(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// testConcurrentOpen starts several instances at once on a table that does
// not exist yet: every one must succeed (CREATE TABLE IF NOT EXISTS races
// on PostgreSQL).
func testConcurrentOpen(t *testing.T, srv server) {
	table := fmt.Sprintf("ks_open_race_%d", tableSeq.Add(1))
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			s, err := keystore.OpenDatabase(context.Background(), srv.dsn, srv.password, table, nil)
			if err == nil {
				err = s.Close()
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i, err)
		}
	}
}

// testReconnect kills the store's server session between calls: the next
// call must reconnect instead of failing.
func testReconnect(t *testing.T, srv server) {
	ctx := context.Background()
	s := openCleanup(t, databaseBacking(srv)(t))
	if err := s.Create(ctx, rec("k", 1, "w")); err != nil {
		t.Fatal(err)
	}
	srv.killSessions(t)
	got, err := s.Get(ctx, "k")
	if err != nil {
		t.Fatalf("Get after the session was killed: %v", err)
	}
	checkRecords(t, "Get after reconnect", got, []keystore.Record{normalized(rec("k", 1, "w"))})
	srv.killSessions(t)
	if err := s.Create(ctx, rec("k", 2, "w")); err != nil {
		t.Fatalf("Create after the session was killed: %v", err)
	}
}
