package testenv

import "fmt"

// mariaDBTLSArgs generates a CA and a server certificate for 127.0.0.1 and
// localhost in dir and returns the mariadbd options that enable TLS with
// them, and the CA file. TLS stays optional for clients (require_secure_transport
// is off), as on a managed server; tests that want it ask for it, and verify
// the server with MariaDB.CAFile.
func mariaDBTLSArgs(dir string) (args []string, caFile string, err error) {
	caFile, certFile, keyFile, err := generateCert(dir, "127.0.0.1", "localhost")
	if err != nil {
		return nil, "", fmt.Errorf("MariaDB TLS certificate: %w", err)
	}
	return []string{"--ssl-ca=" + caFile, "--ssl-cert=" + certFile, "--ssl-key=" + keyFile}, caFile, nil
}
