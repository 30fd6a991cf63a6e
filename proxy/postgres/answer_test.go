package postgres_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/dbproxy/dbproxy/proxy/postgres"
)

// TestWriterAnswer: a Frontend hook answers a Query itself only when that
// cannot reorder or change what the client sees: nothing else
// outstanding and no transaction block open. Otherwise Answer does
// nothing and the hook forwards a stand-in.
func TestWriterAnswer(t *testing.T) {
	refusal := encode(t, &pgproto3.ErrorResponse{Severity: "ERROR", Code: "0A000", Message: "refused"})
	stand := &pgproto3.Query{String: "stand-in"}
	tests := []struct {
		name     string
		txStatus byte
		in       []byte
		answered bool
	}{
		{"alone between transactions", 'I', encode(t, &pgproto3.Query{String: "refuse"}), true},
		{"inside a transaction block", 'T', encode(t, &pgproto3.Query{String: "refuse"}), false},
		{"in a failed block", 'E', encode(t, &pgproto3.Query{String: "refuse"}), false},
		{"behind an unanswered query", 'I', encode(t, &pgproto3.Query{String: "select 1"}, &pgproto3.Query{String: "refuse"}), false},
		{"behind a batch without Sync", 'I', encode(t, &pgproto3.Parse{Query: "select 1"}, &pgproto3.Query{String: "refuse"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var types postgres.MessageTypes
			types.Add('Q')
			var answered []bool
			hook := func(typ byte, body []byte, w *postgres.Writer) error {
				if string(body) != "refuse\x00" {
					w.Forward(typ, body)
					return nil
				}
				ok, err := w.Answer(refusal)
				if err != nil {
					return err
				}
				answered = append(answered, ok)
				if !ok {
					return w.Send(stand)
				}
				return nil
			}
			var upstream, client bytes.Buffer
			err := postgres.RelayAnswering(bytes.NewReader(tt.in), &upstream, &client, tt.txStatus, types, hook)
			if !errors.Is(err, io.EOF) {
				t.Fatalf("err = %v", err)
			}
			if len(answered) != 1 || answered[0] != tt.answered {
				t.Fatalf("answered %v, want %v", answered, tt.answered)
			}
			if tt.answered {
				want := append(append([]byte(nil), refusal...), encode(t, &pgproto3.ReadyForQuery{TxStatus: 'I'})...)
				if !bytes.Equal(client.Bytes(), want) || upstream.Len() != 0 {
					t.Fatalf("client got %q, upstream %q; want the answer and nothing upstream", client.Bytes(), upstream.Bytes())
				}
				return
			}
			if client.Len() != 0 || !bytes.HasSuffix(upstream.Bytes(), encode(t, stand)) {
				t.Fatalf("client got %q, upstream %q; want nothing to the client and the stand-in upstream", client.Bytes(), upstream.Bytes())
			}
		})
	}
}
