package integration

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

// replicaPoll is the replicas' keys.store.poll: short for the test, yet
// long enough that a poll delayed by a loaded machine stays within the
// margin (one poll) before a new version is written.
const replicaPoll = 2 * time.Second

// replicaSetup is one protocol's half of the replica test: the database
// the replicas proxy, which also holds their keystore table.
type replicaSetup struct {
	protocol   string // listener protocol
	upstream   string
	keystore   string // keys.store.dsn, without password
	password   string // of the keystore and catalog logins
	catalog    string // catalog user; "" for none
	createSQL  string
	admin      *sql.DB
	client     func(t *testing.T, addr string) *sql.DB // a session pool through a replica
	insertSQL  string                                  // returns the new id (PostgreSQL) or not (MySQL)
	lookupSQL  string
	returnsIDs bool
}

func pgReplicaSetup(t *testing.T) replicaSetup {
	pg := testenv.StartPostgres(t)
	admin, err := sql.Open("pgx", pg.DSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	return replicaSetup{
		protocol: "postgres", upstream: pg.Addr(), password: pg.Password, catalog: pg.User,
		keystore:  fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable", pg.User, pg.Addr(), pg.Database),
		createSQL: `CREATE TABLE notes (id serial PRIMARY KEY, email bytea)`,
		admin:     admin,
		client: func(t *testing.T, addr string) *sql.DB {
			db, err := sql.Open("pgx", fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", pg.User, pg.Password, addr, pg.Database))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			return db
		},
		insertSQL:  `INSERT INTO notes (email) VALUES ($1) RETURNING id`,
		lookupSQL:  `SELECT id FROM notes WHERE email = $1 ORDER BY id`,
		returnsIDs: true,
	}
}

func myReplicaSetup(t *testing.T) replicaSetup {
	my := testenv.StartMariaDB(t)
	return replicaSetup{
		protocol: "mysql", upstream: my.Addr(), password: my.Password,
		keystore:  fmt.Sprintf("mysql://%s@tcp(%s)/%s", my.User, my.Addr(), my.Database),
		createSQL: `CREATE TABLE notes (id INT AUTO_INCREMENT PRIMARY KEY, email VARBINARY(200))`,
		admin:     adminDB(t, my),
		client: func(t *testing.T, addr string) *sql.DB {
			cfg := driver.NewConfig()
			cfg.User, cfg.Passwd, cfg.DBName, cfg.Net, cfg.Addr = my.User, my.Password, my.Database, "tcp", addr
			return openDB(t, cfg)
		},
		insertSQL: "INSERT INTO notes (email) VALUES (?)",
		lookupSQL: "SELECT id FROM notes WHERE email = ? ORDER BY id",
	}
}

// config is the configuration of a replica listening on addr: the keys:
// section the replicas share (one local master key file, the keystore
// table polled every replicaPoll) and one deterministic column.
func (s replicaSetup) config(addr, masterFile string) string {
	l := listenerYAML{protocol: s.protocol, listen: addr, upstream: s.upstream}
	if s.catalog != "" {
		l.catalogUser, l.passwordEnv = s.catalog, "REPLICA_PASSWORD"
	}
	return listenersYAML(l) + fmt.Sprintf(`keys:
  master_key:
    provider: local
    file: %s
  store:
    type: database
    dsn: %s
    password_env: REPLICA_PASSWORD
    poll: %s
encryption:
  - table: notes
    columns:
      - name: email
        mode: deterministic
        type: text
        key: notes.email
shutdown_timeout: 5s
`, masterFile, s.keystore, replicaPoll)
}

// replica is one `dbproxy serve` of the pair and a session pool through it.
type replica struct {
	name string
	proc *dbproxyProc
	db   *sql.DB
	s    *replicaSetup
}

// TestReplicasRotateThroughKeystorePoll: two `dbproxy serve` processes
// share a keystore table (poll 2s) and encrypt one deterministic column.
// Both write; `dbproxy keys rotate` runs from the CLI; both keep writing.
// Whenever a row written under the new version appears, the other replica
// finds it by its value at once: no replica writes under a version another
// cannot match yet. After both write under version 2, every row reads back
// through both replicas, every value's lookup finds exactly its rows
// (versions 1 and 2 alike), and the table holds only ciphertext of both
// versions. PostgreSQL and MySQL, each its own keystore.
func TestReplicasRotateThroughKeystorePoll(t *testing.T) {
	bin := buildDBProxy(t)
	for name, setup := range map[string]func(*testing.T) replicaSetup{"postgres": pgReplicaSetup, "mysql": myReplicaSetup} {
		t.Run(name, func(t *testing.T) { replicasRotate(t, bin, setup(t)) })
	}
}

func replicasRotate(t *testing.T, bin string, s replicaSetup) {
	ctx := testCtx(t)
	if _, err := s.admin.ExecContext(ctx, s.createSQL); err != nil {
		t.Fatal(err)
	}
	master := filepath.Join(t.TempDir(), "master.key")
	var reps []*replica
	for _, name := range []string{"a", "b"} {
		addr := freeListenAddr(t)
		r := &replica{name: name, s: &s,
			proc: newDBProxy(t, bin, "", s.config(addr, master), []string{"REPLICA_PASSWORD=" + s.password}, addr)}
		if name == "a" {
			r.proc.keysInit(t)
		} else {
			time.Sleep(replicaPoll / 2) // the replicas poll at different moments
		}
		r.proc.start(t)
		r.proc.stopAtCleanup(t)
		r.db = s.client(t, addr)
		reps = append(reps, r)
	}

	rows := map[int64]string{} // id -> plaintext, every row written
	write := func(r *replica, v string) (id int64, version uint32) {
		t.Helper()
		id = r.insert(t, v)
		rows[id] = v
		var raw []byte
		if err := s.admin.QueryRowContext(ctx, `SELECT email FROM notes WHERE id = `+strconv.FormatInt(id, 10)).Scan(&raw); err != nil {
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
	// reads the new version about half a poll before the other: the
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
			if other := reps[1-i]; !slices.Equal(other.lookup(t, v), []int64{id}) {
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
	checkStoredVersions(t, s.admin, rows)
}

// insert writes v through r and returns the new row's id.
func (r *replica) insert(t *testing.T, v string) int64 {
	t.Helper()
	ctx := testCtx(t)
	var id int64
	if r.s.returnsIDs {
		if err := r.db.QueryRowContext(ctx, r.s.insertSQL, v).Scan(&id); err != nil {
			t.Fatalf("insert through %s: %v", r.name, err)
		}
		return id
	}
	res, err := r.db.ExecContext(ctx, r.s.insertSQL, v)
	if err == nil {
		id, err = res.LastInsertId()
	}
	if err != nil {
		t.Fatalf("insert through %s: %v", r.name, err)
	}
	return id
}

// lookup returns the ids of the rows whose email is v, read through r.
func (r *replica) lookup(t *testing.T, v string) []int64 {
	t.Helper()
	res, err := r.db.QueryContext(testCtx(t), r.s.lookupSQL, v)
	if err != nil {
		t.Fatalf("lookup through %s: %v", r.name, err)
	}
	defer res.Close()
	var ids []int64
	for res.Next() {
		var id int64
		if err := res.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("lookup through %s: %v", r.name, err)
	}
	return ids
}

// checkReplicaRows reads every row through every replica, and looks every
// written value up through every replica.
func checkReplicaRows(t *testing.T, reps []*replica, rows map[int64]string) {
	t.Helper()
	want := map[string][]int64{}
	for id, v := range rows {
		want[v] = append(want[v], id)
	}
	for _, r := range reps {
		got := map[int64]string{}
		all, err := r.db.QueryContext(testCtx(t), `SELECT id, email FROM notes`)
		if err != nil {
			t.Fatal(err)
		}
		for all.Next() {
			var id int64
			var v string
			if err := all.Scan(&id, &v); err != nil {
				t.Fatal(err)
			}
			got[id] = v
		}
		if err := all.Err(); err != nil {
			t.Fatalf("select all through %s: %v", r.name, err)
		}
		all.Close()
		if fmt.Sprint(got) != fmt.Sprint(rows) {
			t.Fatalf("select all through %s:\n got %v\nwant %v", r.name, got, rows)
		}
		for v, ids := range want {
			slices.Sort(ids)
			if got := r.lookup(t, v); !slices.Equal(got, ids) {
				t.Fatalf("lookup %q through %s: ids %v, want %v", v, r.name, got, ids)
			}
		}
	}
}

// checkStoredVersions reads the table directly: only ciphertext, none
// holding its plaintext, under both key versions.
func checkStoredVersions(t *testing.T, admin *sql.DB, rows map[int64]string) {
	t.Helper()
	seen := map[uint32]int{}
	raw, err := admin.QueryContext(testCtx(t), `SELECT id, email FROM notes`)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for raw.Next() {
		var id int64
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
	if len(seen) != 2 || seen[1] == 0 || seen[2] == 0 || len(rows) != seen[1]+seen[2] {
		t.Fatalf("rows per key version %v (%d rows written), want versions 1 and 2", seen, len(rows))
	}
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
