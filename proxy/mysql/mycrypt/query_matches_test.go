package mycrypt_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"

	"github.com/dbproxy/dbproxy/crypto"
	"github.com/dbproxy/dbproxy/proxy/mysql"
	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// TestQueryLookupNotDecryptedAgain: in a COM_QUERY text result, a
// deterministic cell that is the ciphertext the proxy rendered for the
// query's literal lookup is answered without decrypting it; a cell of
// another value is decrypted, and a tampered one refused.
func TestQueryLookupNotDecryptedAgain(t *testing.T) {
	ctx := context.Background()
	keys := &countingKeys{Keys: benchManager(t)}
	set := benchRules(t)
	enc := rules.NewEncryptor(keys)
	h := newSession(t, mycrypt.Options{Rules: set, Encryptor: enc}, mysql.SessionInfo{Database: benchDB, Charset: 45, ServerVersion: mariaDB})
	email := set.Column(benchDB, "", "users_enc", "email")
	ct := func(v string) []byte {
		c, err := enc.EncryptForStore(ctx, email, []byte(v))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// run sends the query and a one-column result with the given rows.
	run := func(rows ...[]byte) ([]byte, error) {
		x := &mysql.Exchange{Command: gomysql.COM_QUERY, DeprecateEOF: true}
		var w mysql.Writer
		if err := h.Command(x, append([]byte{gomysql.COM_QUERY}, "SELECT email FROM users_enc WHERE email IN ('a@x', 'b@x')"...), &w); err != nil {
			return nil, err
		}
		if !bytes.Contains(w.Bytes(), []byte("X'")) || bytes.Contains(w.Bytes(), []byte("a@x")) {
			t.Fatalf("query not rewritten: %q", w.Bytes())
		}
		var out []byte
		x.Columns = 1
		steps := []struct {
			kind mysql.Kind
			p    []byte
		}{
			{mysql.KindColumnCount, []byte{1}},
			{mysql.KindColumnDef, colDef("users_enc", "email", gomysql.MYSQL_TYPE_VAR_STRING, 63, 512, gomysql.BINARY_FLAG)},
		}
		for _, r := range rows {
			steps = append(steps, struct {
				kind mysql.Kind
				p    []byte
			}{mysql.KindTextRow, lenenc(nil, r)})
		}
		for _, st := range steps {
			w.Reset()
			if err := h.Result(x, st.kind, st.p, &w); err != nil {
				return out, err
			}
			out = append(out, w.Bytes()...)
		}
		return out, nil
	}
	before := keys.det.Load()
	out, err := run(ct("a@x"), ct("b@x"))
	if err != nil || !bytes.Contains(out, []byte("\x03a@x")) || !bytes.Contains(out, []byte("\x03b@x")) {
		t.Fatalf("rows: %q %v", out, err)
	}
	if n := keys.det.Load() - before; n != 0 {
		t.Errorf("%d decryptions of cells that are the lookup's own ciphertexts, want 0", n)
	}
	before = keys.det.Load()
	if out, err = run(ct("c@x")); err != nil || !bytes.Contains(out, []byte("\x03c@x")) {
		t.Fatalf("other row: %q %v", out, err)
	}
	if n := keys.det.Load() - before; n != 1 {
		t.Errorf("%d decryptions of a cell of another value, want 1", n)
	}
	bad := ct("a@x")
	bad[len(bad)-1] ^= 1
	_, err = run(bad)
	var me *mysql.Error
	if !errors.As(err, &me) || !errors.Is(err, crypto.ErrDecrypt) && me.Code != gomysql.ER_UNKNOWN_ERROR {
		t.Fatalf("tampered cell: %v, want a decryption error", err)
	}
}
