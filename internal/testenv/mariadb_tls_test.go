package testenv_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"os"
	"testing"

	"github.com/go-sql-driver/mysql"

	"github.com/dbproxy/dbproxy/internal/testenv"
)

// TestMariaDBTLS: the server started here offers TLS with a certificate
// that verifies against CAFile for 127.0.0.1; plaintext stays allowed.
func TestMariaDBTLS(t *testing.T) {
	m := testenv.StartMariaDB(t)
	if m.External {
		t.Skip("external server")
	}
	pem, err := os.ReadFile(m.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no certificate in CAFile")
	}
	if err := mysql.RegisterTLSConfig("testenv-tls", &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	defer mysql.DeregisterTLSConfig("testenv-tls")
	for dsn, wantTLS := range map[string]bool{m.DSN() + "?tls=testenv-tls": true, m.DSN(): false} {
		db, err := sql.Open("mysql", dsn)
		if err != nil {
			t.Fatal(err)
		}
		var name, cipher string
		err = db.QueryRowContext(context.Background(), "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher)
		db.Close()
		if err != nil || (cipher != "") != wantTLS {
			t.Fatalf("TLS=%v: cipher %q, %v", wantTLS, cipher, err)
		}
	}
}
