// Package testenv gives tests real database and KMS servers: throwaway
// PostgreSQL and MariaDB servers started from the binaries on the machine,
// or existing servers named by environment variables, a local-kms
// server in its own network namespace, and throwaway SoftHSM2 tokens.
//
// # Usage
//
// Every test package that uses the harness runs its tests under Main, so
// that servers are shared between its tests and stopped when they end:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		pg := testenv.StartPostgres(t)                                        // trust auth
//		scram := testenv.StartPostgres(t, testenv.PGOptions{Auth: "scram-sha-256", TLS: true})
//		my := testenv.StartMariaDB(t)
//		kms := testenv.StartLocalKMS(t)
//		hsm := testenv.StartSoftHSM(t)                                      // sets SOFTHSM2_CONF
//		conn := testenv.ConnectPG(t, pg.DSN())                              // closed at the end
//		addr := testenv.ServeTCP(t, func(c net.Conn) { ... })               // a fake server
//		...
//	}
//
// Each StartPostgres or StartMariaDB call gets its own database (t_<random>)
// and its own user (u_<random>, with a random password) on a server that is
// started on first use and shared by every later call in the same test
// binary with the same options (one server per distinct PGOptions, one
// MariaDB server). The database and user are dropped by t.Cleanup; the
// shared servers are stopped, and their directories removed, when Main's
// m.Run returns. Without Main there is no hook at process exit, so each
// call then starts a private server torn down by t.Cleanup: correct, but
// slow. PGOptions.Dedicated asks for such a private server explicitly.
//
// # Servers started here
//
// Servers listen on 127.0.0.1 on a free port (never the machine's own
// 5432/3306 services), keep their files under
// /tmp/dbproxy-testenv/p<pid>-*/ (mode 0755: PostgreSQL runs as the
// postgres system user when the tests run as root, because initdb and
// postgres refuse root), and run in their own process group with a
// parent-death signal (SIGKILL), so a killed test binary takes them with
// it. Directories left by killed test binaries are removed by the next run.
// PostgreSQL is tuned for speed, not durability (fsync, synchronous_commit
// and full_page_writes off). Data directories are initialised once per
// machine (initdb, mariadb-install-db) into
// /tmp/dbproxy-testenv/tmpl-<kind>-<hash>, keyed by the server binaries, and
// copied for each server; delete those directories to force a rebuild. Admin work goes over the unix socket as the
// postgres superuser (PostgreSQL) or root (MariaDB).
//
// When no server is available, the test fails (never skips) with the hint
// `apt-get install postgresql mariadb-server`: a missing database must not
// turn into a silently green run.
//
// # Environment
//
//   - DBPROXY_TEST_PG_DSN: an admin postgres:// URL. No PostgreSQL server is
//     started; each call creates a database and role on that server.
//     PGOptions are not enforced there (the server's own pg_hba and TLS
//     apply).
//   - DBPROXY_TEST_MYSQL_DSN: an admin DSN in go-sql-driver format
//     (root:pw@tcp(host:3306)/), likewise for StartMariaDB.
//   - DBPROXY_TEST_PG_BINDIR: where initdb and postgres live (default: the
//     highest /usr/lib/postgresql/<version>/bin, then pg_config --bindir).
//   - DBPROXY_TEST_LOCAL_KMS: a local-kms binary (default: the pinned version,
//     built once per machine with go install into the user cache directory).
//   - DBPROXY_TEST_TMPDIR: root for server directories (default /tmp).
//
// # local-kms
//
// StartLocalKMS is not shared: each call gets its own server with one seeded
// AES key and alias, and tests may Stop and Start it to simulate an outage.
// local-kms binds every interface and cannot be told otherwise, so it runs in
// a new network namespace holding only a loopback interface; Endpoint is an
// in-process forwarder on 127.0.0.1 that dials into that namespace. This
// needs root (CLONE_NEWNET).
//
// # SoftHSM2
//
// StartSoftHSM writes a softhsm2.conf with its own token directory in
// t.TempDir(), initialises a token labelled "dbproxy" with random user and
// SO PINs (softhsm2-util --init-token) and sets SOFTHSM2_CONF for the
// test (so such tests cannot be parallel). Without the softhsm2 package
// the test fails with `apt-get install softhsm2`.
//
// # Boundaries
//
// This package is imported by tests only. It owns server lifecycles and
// per-test provisioning; it knows nothing of dbproxy itself and imports no
// dbproxy package. Its process-wide registry of shared servers is the one
// deliberate piece of global mutable state: sharing across the tests of a
// binary is its purpose.
package testenv
