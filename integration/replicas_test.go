package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

// replicaKeys is the keys: section the replicas share: one local master
// key file and the PostgreSQL keystore table, polled every second.
func replicaKeys(masterFile string, pg *testenv.Postgres) string {
	return fmt.Sprintf(`keys:
  master_key:
    provider: local
    file: %s
  store:
    type: database
    dsn: postgres://%s@%s/%s?sslmode=disable
    password_env: REPLICA_KEYSTORE_PASSWORD
    poll: 1s
encryption:
  - table: notes
    columns:
      - name: email
        mode: deterministic
        type: text
        key: notes.email
shutdown_timeout: 5s
`, masterFile, pg.User, pg.Addr(), pg.Database)
}

// replica is one `dbproxy serve` of the pair and a session through it.
type replica struct {
	name string
	proc *dbproxyProc
	conn *pgx.Conn
}

// TestReplicasRotateThroughKeystorePoll: two `dbproxy serve` processes
// share a PostgreSQL keystore (poll 1s) and encrypt one deterministic
// column. Both write; `dbproxy keys rotate` runs from the CLI; both keep
// writing. Whenever a row written under the new version appears, the
// other replica finds it by its value at once: no replica writes under a
// version another cannot match yet. After both write under version 2,
// every row reads back through both replicas, every value's lookup finds
// exactly its rows (versions 1 and 2 alike), and the table holds only
// ciphertext of both versions.
func TestReplicasRotateThroughKeystorePoll(t *testing.T) {
	pg := testenv.StartPostgres(t)
	ctx := testCtx(t)
	admin := testenv.ConnectPG(t, pg.DSN())
	if _, err := admin.Exec(ctx, `CREATE TABLE notes (id serial PRIMARY KEY, email bytea)`); err != nil {
		t.Fatal(err)
	}
	bin := buildDBProxy(t)
	master := filepath.Join(t.TempDir(), "master.key")
	env := []string{"REPLICA_KEYSTORE_PASSWORD=" + pg.Password, "REPLICA_CATALOG_PASSWORD=" + pg.Password}
	var reps []*replica
	for _, name := range []string{"a", "b"} {
		addr := freeListenAddr(t)
		cfg := listenersYAML(listenerYAML{protocol: "postgres", listen: addr, upstream: pg.Addr(),
			catalogUser: pg.User, passwordEnv: "REPLICA_CATALOG_PASSWORD"}) + replicaKeys(master, pg)
		r := &replica{name: name, proc: newDBProxy(t, bin, "", cfg, env, addr)}
		if name == "a" {
			r.proc.keysInit(t)
		}
		if name == "b" {
			time.Sleep(500 * time.Millisecond) // half a poll: the replicas poll at different moments
		}
		r.proc.start(t)
		r.proc.stopAtCleanup(t)
		r.conn = testenv.ConnectPG(t, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", pg.User, pg.Password, addr, pg.Database))
		reps = append(reps, r)
	}

	rows := map[int32]string{} // id -> plaintext, every row written
	write := func(r *replica, v string) (id int32, version uint32) {
		t.Helper()
		if err := r.conn.QueryRow(ctx, `INSERT INTO notes (email) VALUES ($1) RETURNING id`, v).Scan(&id); err != nil {
			t.Fatalf("insert through %s: %v", r.name, err)
		}
		rows[id] = v
		var raw []byte
		if err := admin.QueryRow(ctx, `SELECT email FROM notes WHERE id = $1`, id).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		h, err := crypto.ParseHeader(raw)
		if err != nil {
			t.Fatalf("row %d written through %s is not a ciphertext: %v", id, r.name, err)
		}
		return id, h.KeyVersion
	}
	for i, r := range reps {
		write(r, "shared@example.com")
		write(r, fmt.Sprintf("before-%d@example.com", i))
	}

	out, err := runKeysCLI(reps[0].proc, "rotate", "notes.email")
	if err != nil || !strings.Contains(out, "version 2 added") || !strings.Contains(out, "becomes primary at") {
		t.Fatalf("keys rotate: %v\n%s", err, out)
	}

	// Both keep writing, in turns, until each has written a row under
	// version 2; a row under version 2 must be found through the other
	// replica at once. The replicas started half a poll apart, so one
	// reads the new version about half a second before the other: the
	// window in which writing under it would break the other's lookups.
	onV2 := make([]bool, len(reps))
	deadline := time.Now().Add(time.Minute)
	for n := 0; slices.Contains(onV2, false); n++ {
		if time.Now().After(deadline) {
			t.Fatalf("replicas writing under version 2 after a minute: %v", onV2)
		}
		for i, r := range reps {
			v := fmt.Sprintf("during-%s-%d@example.com", r.name, n)
			id, version := write(r, v)
			if version != 2 {
				continue
			}
			onV2[i] = true
			if other := reps[1-i]; !slices.Equal(lookup(t, other, v), []int32{id}) {
				t.Fatalf("replica %s wrote row %d under version 2, but replica %s does not find its value %q", r.name, id, other.name, v)
			}
		}
		time.Sleep(20 * time.Millisecond) // pacing the writers, not asserting a duration
	}
	out, err = runKeysCLI(reps[0].proc, "list", "--json")
	var infos []struct {
		Version          uint32
		Primary, Pending bool
	}
	if err != nil || json.Unmarshal([]byte(out), &infos) != nil || len(infos) != 2 || !infos[1].Primary || infos[1].Pending || infos[0].Primary {
		t.Fatalf("keys list --json after both replicas write under version 2: %v\n%s", err, out)
	}
	for i, r := range reps {
		write(r, "shared@example.com")
		write(r, fmt.Sprintf("after-%d@example.com", i))
	}

	checkReplicaRows(t, reps, rows)
	checkStoredVersions(t, admin, rows)
}

// checkReplicaRows reads every row through every replica, and looks every
// written value up through every replica.
func checkReplicaRows(t *testing.T, reps []*replica, rows map[int32]string) {
	t.Helper()
	want := map[string][]int32{}
	for id, v := range rows {
		want[v] = append(want[v], id)
	}
	for _, r := range reps {
		got := map[int32]string{}
		all, err := r.conn.Query(testCtx(t), `SELECT id, email FROM notes`)
		if err != nil {
			t.Fatal(err)
		}
		for all.Next() {
			var id int32
			var v string
			if err := all.Scan(&id, &v); err != nil {
				t.Fatal(err)
			}
			got[id] = v
		}
		if err := all.Err(); err != nil {
			t.Fatalf("select all through %s: %v", r.name, err)
		}
		if fmt.Sprint(got) != fmt.Sprint(rows) {
			t.Fatalf("select all through %s:\n got %v\nwant %v", r.name, got, rows)
		}
		for v, ids := range want {
			slices.Sort(ids)
			if got := lookup(t, r, v); !slices.Equal(got, ids) {
				t.Fatalf("lookup %q through %s: ids %v, want %v", v, r.name, got, ids)
			}
		}
	}
}

// checkStoredVersions reads the table directly: only ciphertext, none
// holding its plaintext, under both key versions.
func checkStoredVersions(t *testing.T, admin *pgx.Conn, rows map[int32]string) {
	t.Helper()
	seen := map[uint32]int{}
	raw, err := admin.Query(testCtx(t), `SELECT id, email FROM notes`)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for raw.Next() {
		var id int32
		var ct []byte
		if err := raw.Scan(&id, &ct); err != nil {
			t.Fatal(err)
		}
		h, err := crypto.ParseHeader(ct)
		if err != nil || !crypto.IsCiphertext(ct) || strings.Contains(string(ct), rows[id]) {
			t.Fatalf("row %d is stored as %x, not as a ciphertext (%v)", id, ct, err)
		}
		seen[h.KeyVersion]++
	}
	if err := raw.Err(); err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[1] == 0 || seen[2] == 0 {
		t.Fatalf("rows per key version %v, want versions 1 and 2", seen)
	}
}

// lookup returns the ids of the rows whose email is v, read through r.
func lookup(t *testing.T, r *replica, v string) []int32 {
	t.Helper()
	res, err := r.conn.Query(testCtx(t), `SELECT id FROM notes WHERE email = $1 ORDER BY id`, v)
	if err != nil {
		t.Fatalf("lookup through %s: %v", r.name, err)
	}
	ids, err := pgx.CollectRows(res, pgx.RowTo[int32])
	if err != nil {
		t.Fatalf("lookup through %s: %v", r.name, err)
	}
	return ids
}

// runKeysCLI runs `dbproxy keys ARGS…` on the config of d and returns its
// standard output; an error carries its standard error.
func runKeysCLI(d *dbproxyProc, args ...string) (string, error) {
	cmd := exec.Command(d.bin, append(append([]string{"keys"}, args...), "--config", d.cfgPath)...)
	cmd.Env = append(os.Environ(), d.env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("dbproxy keys %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), err
}
