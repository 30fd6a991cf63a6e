package integration

// The quickstart files stay in lockstep: docker-compose.yml, its config
// (examples/docker/dbproxy.yaml, also the base of `make demo`), the schema
// files of both databases, and examples/dbproxy.yaml with its schema. No
// Docker engine is needed: the compose file is read as YAML, and the schema
// files are applied to throwaway servers.

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/internal/testenv"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	p := filepath.Join("..", rel)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

type composeService struct {
	Image       string            `yaml:"image"`
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
	Ports       []string          `yaml:"ports"`
	Volumes     []string          `yaml:"volumes"`
}

func TestExamplesAgree(t *testing.T) {
	var compose struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal([]byte(repoFile(t, "docker-compose.yml")), &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	proxySvc, ok := compose.Services["dbproxy"]
	if !ok {
		t.Fatal("docker-compose.yml: no dbproxy service")
	}
	const cfgMount = "./examples/docker/dbproxy.yaml:/etc/dbproxy/dbproxy.yaml:ro"
	for _, name := range []string{"dbproxy", "keys-init"} {
		if !contains(compose.Services[name].Volumes, cfgMount) {
			t.Errorf("service %s does not mount %s", name, cfgMount)
		}
	}
	if !strings.Contains(repoFile(t, "Dockerfile"), "DBPROXY_CONFIG=/etc/dbproxy/dbproxy.yaml") {
		t.Error("Dockerfile does not point DBPROXY_CONFIG at /etc/dbproxy/dbproxy.yaml")
	}

	cfg, err := config.Parse(filepath.Join("..", "examples", "docker", "dbproxy.yaml"), []byte(repoFile(t, "examples/docker/dbproxy.yaml")))
	if err != nil {
		t.Fatalf("examples/docker/dbproxy.yaml: %v", err)
	}
	dbs := map[config.Protocol]struct{ user, password, database, schema string }{}
	for _, l := range cfg.Listeners {
		_, port, _ := strings.Cut(l.Listen, ":")
		if want := "127.0.0.1:" + port + ":" + port; !contains(proxySvc.Ports, want) {
			t.Errorf("listener %s listens on %s but dbproxy publishes %v (want %s)", l.Name, l.Listen, proxySvc.Ports, want)
		}
		host, upPort, _ := strings.Cut(l.Upstream, ":")
		db, ok := compose.Services[host]
		if !ok {
			t.Errorf("listener %s: upstream host %q is not a compose service", l.Name, host)
			continue
		}
		var user, password, database, defPort, schemaFile string
		switch l.Protocol {
		case config.ProtocolPostgres:
			user, password, database, defPort, schemaFile = db.Environment["POSTGRES_USER"], db.Environment["POSTGRES_PASSWORD"], db.Environment["POSTGRES_DB"], "5432", "examples/docker/schema.sql"
		case config.ProtocolMySQL:
			user, password, database, defPort, schemaFile = db.Environment["MARIADB_USER"], db.Environment["MARIADB_PASSWORD"], db.Environment["MARIADB_DATABASE"], "3306", "examples/docker/schema-mysql.sql"
		}
		if upPort != defPort {
			t.Errorf("listener %s: upstream port %s, the %s image listens on %s", l.Name, upPort, db.Image, defPort)
		}
		if !contains(db.Volumes, "./"+schemaFile+":/docker-entrypoint-initdb.d/schema.sql:ro") {
			t.Errorf("service %s does not load %s", host, schemaFile)
		}
		if l.Catalog == nil {
			t.Errorf("listener %s has no catalog credentials", l.Name)
			continue
		}
		if l.Catalog.User != user {
			t.Errorf("listener %s: catalog user %q, the database's user is %q", l.Name, l.Catalog.User, user)
		}
		if got := proxySvc.Environment[l.Catalog.PasswordEnv]; got != password {
			t.Errorf("listener %s: dbproxy's %s = %q, the database's password is %q", l.Name, l.Catalog.PasswordEnv, got, password)
		}
		dbs[l.Protocol] = struct{ user, password, database, schema string }{user, password, database, repoFile(t, schemaFile)}
	}
	if len(dbs) != 2 {
		t.Fatalf("want a postgres and a mysql listener, got %d protocols", len(dbs))
	}
	// The admin listener (metrics, health) is on, on every interface of
	// the container, and published like the listeners.
	if cfg.Admin == nil {
		t.Error("examples/docker/dbproxy.yaml has no admin: section")
	} else if host, port, _ := strings.Cut(cfg.Admin.Listen, ":"); host != "0.0.0.0" || !contains(proxySvc.Ports, "127.0.0.1:"+port+":"+port) {
		t.Errorf("admin listens on %s; want 0.0.0.0 and dbproxy publishing 127.0.0.1:%s:%s (got %v)", cfg.Admin.Listen, port, port, proxySvc.Ports)
	}

	// make demo rewrites this file's addresses and paths with sed: every
	// pattern must still be there.
	demo := repoFile(t, "scripts/demo.sh")
	for _, m := range regexp.MustCompile(`-e "s\|([^|]+)\|`).FindAllStringSubmatch(demo, -1) {
		if !strings.Contains(repoFile(t, "examples/docker/dbproxy.yaml"), m[1]) {
			t.Errorf("scripts/demo.sh replaces %q, which examples/docker/dbproxy.yaml does not contain", m[1])
		}
	}
	for _, f := range []string{"examples/docker/schema.sql", "examples/docker/schema-mysql.sql", "examples/docker/dbproxy.yaml"} {
		if !strings.Contains(demo, f) {
			t.Errorf("scripts/demo.sh does not use %s", f)
		}
	}

	// Apply the schemas to real servers: every encrypted column exists with
	// a ciphertext type.
	ctx := context.Background()
	pg := testenv.StartPostgres(t)
	pc := testenv.ConnectPG(t, pg.DSN())
	if _, err := pc.Exec(ctx, dbs[config.ProtocolPostgres].schema); err != nil {
		t.Fatalf("examples/docker/schema.sql: %v", err)
	}
	checkPGColumns(t, pc, cfg)

	my := testenv.StartMariaDB(t)
	md := openDB(t, myConfigAt(t, my.Addr(), my.User, my.Password, my.Database, "multiStatements=true"))
	if _, err := md.ExecContext(ctx, dbs[config.ProtocolMySQL].schema); err != nil {
		t.Fatalf("examples/docker/schema-mysql.sql: %v", err)
	}
	for _, c := range cfg.Columns() {
		var typ string
		err := md.QueryRowContext(ctx, `SELECT DATA_TYPE FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?`,
			my.Database, c.Table, c.Column).Scan(&typ)
		if err != nil {
			t.Errorf("MariaDB schema: column %s.%s: %v", c.Table, c.Column, err)
		} else if typ != "varbinary" && !strings.HasSuffix(typ, "blob") {
			t.Errorf("MariaDB schema: column %s.%s is %s, want VARBINARY or BLOB", c.Table, c.Column, typ)
		}
	}

	// examples/dbproxy.yaml and its schema.
	local, err := config.Parse(filepath.Join("..", "examples", "dbproxy.yaml"), []byte(repoFile(t, "examples/dbproxy.yaml")))
	if err != nil {
		t.Fatalf("examples/dbproxy.yaml: %v", err)
	}
	pg2 := testenv.StartPostgres(t)
	pc2 := testenv.ConnectPG(t, pg2.DSN())
	if _, err := pc2.Exec(ctx, repoFile(t, "examples/schema.sql")); err != nil {
		t.Fatalf("examples/schema.sql: %v", err)
	}
	checkPGColumns(t, pc2, local)
}

func checkPGColumns(t *testing.T, c *pgx.Conn, cfg *config.Config) {
	t.Helper()
	for _, col := range cfg.Columns() {
		var typ string
		err := c.QueryRow(context.Background(), `SELECT data_type FROM information_schema.columns
			WHERE table_schema = $1 AND table_name = $2 AND column_name = $3`, col.Schema, col.Table, col.Column).Scan(&typ)
		if err != nil {
			t.Errorf("PostgreSQL schema: column %s.%s.%s: %v", col.Schema, col.Table, col.Column, err)
		} else if typ != "bytea" {
			t.Errorf("PostgreSQL schema: column %s.%s.%s is %s, want bytea", col.Schema, col.Table, col.Column, typ)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
