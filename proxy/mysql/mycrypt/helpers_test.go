package mycrypt_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
	"github.com/dbproxy/dbproxy/value"
)

// mariaDB is the server version a MariaDB 10.11 server announces.
const mariaDB = "5.5.5-10.11.6-MariaDB"

// newKeys returns a new key, version 1, for each name with its algorithm.
func newKeys(tb testing.TB, algs map[string]crypto.Algorithm) memKeys {
	tb.Helper()
	keys := memKeys{}
	for name, alg := range algs {
		m, err := crypto.NewRandomKeyMaterial(alg)
		if err != nil {
			tb.Fatal(err)
		}
		if keys[name], err = crypto.NewKey(name, 1, alg, m); err != nil {
			tb.Fatal(err)
		}
	}
	return keys
}

// detKeys returns one new deterministic (AES-SIV) key, det.
func detKeys(tb testing.TB) memKeys {
	tb.Helper()
	return newKeys(tb, map[string]crypto.Algorithm{"det": crypto.AlgorithmAESSIV})
}

// usersSpecs are the rules of users: email deterministic under key det,
// ssn randomized under key rnd.
func usersSpecs() []rules.Spec {
	return []rules.Spec{
		{Table: "users", Column: "email", Key: "det", Mode: rules.ModeDeterministic, Type: value.TypeText},
		{Table: "users", Column: "ssn", Key: "rnd", Mode: rules.ModeRandomized, Type: value.TypeText},
	}
}

// mysqlRules returns the MySQL rule set of specs.
func mysqlRules(tb testing.TB, specs ...rules.Spec) *rules.Set {
	tb.Helper()
	set, err := rules.New(rules.DialectMySQL, specs)
	if err != nil {
		tb.Fatal(err)
	}
	return set
}

// newSession returns the hooks of a new session described by info, of an
// interceptor made with opts.
func newSession(tb testing.TB, opts mycrypt.Options, info mysql.SessionInfo) *mysql.SessionHooks {
	tb.Helper()
	ic, err := mycrypt.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return icSession(tb, ic, info)
}

// icSession returns the hooks of a new session of ic described by info.
func icSession(tb testing.TB, ic *mycrypt.Interceptor, info mysql.SessionInfo) *mysql.SessionHooks {
	tb.Helper()
	h, err := ic.NewSession(context.Background(), info)
	if err != nil || h == nil {
		tb.Fatalf("NewSession: %v", err)
	}
	return h
}

// lexHooks returns hooks of a session described by info, with a
// deterministic rule on users.email, a randomized one on users.ssn and,
// optionally, a LexSource. An empty Database means app.
func lexHooks(t *testing.T, info mysql.SessionInfo, src mycrypt.LexSource) *mysql.SessionHooks {
	t.Helper()
	keys := newKeys(t, map[string]crypto.Algorithm{"det": crypto.AlgorithmAESSIV, "rnd": crypto.AlgorithmAESGCM})
	set := mysqlRules(t, usersSpecs()...)
	if info.Database == "" {
		info.Database = "app"
	}
	return newSession(t, mycrypt.Options{Rules: set, Keys: keys, Lex: src}, info)
}

// countingKeys counts the decryptions under each data key.
type countingKeys struct {
	rules.Keys
	det atomic.Int64
}

func (k *countingKeys) Decrypt(ctx context.Context, name string, dst, ct []byte) ([]byte, value.Type, error) {
	if name == "det" {
		k.det.Add(1)
	}
	return k.Keys.Decrypt(ctx, name, dst, ct)
}
