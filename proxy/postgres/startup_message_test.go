package postgres_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"slices"
	"testing"

	"github.com/dbproxy/dbproxy/proxy/postgres"
)

func packet(code uint32, payload ...byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(payload)))
	b = binary.BigEndian.AppendUint32(b, code)
	return append(b, payload...)
}

func TestStartupPacket(t *testing.T) {
	params := []string{"user", "alice", "database", "app", "application_name", "psql"}
	cases := []struct {
		name       string
		in         []byte
		wantCode   uint32
		wantParams []string
		wantErr    bool
	}{
		{"startup 3.0", postgres.EncodeStartup(3<<16, params), 3 << 16, params, false},
		{"startup 3.2", postgres.EncodeStartup(3<<16|2, params), 3<<16 | 2, params, false},
		{"SSLRequest", packet(80877103), 80877103, nil, false},
		{"GSSENCRequest", packet(80877104), 80877104, nil, false},
		{"CancelRequest", packet(80877102, 0, 0, 0, 1, 9, 9, 9, 9), 80877102, nil, false},
		{"no user", postgres.EncodeStartup(3<<16, []string{"database", "x"}), 0, nil, true},
		{"no terminator", packet(3<<16, []byte("user\x00bob\x00")...), 0, nil, true},
		{"value missing", packet(3<<16, []byte("user\x00bob\x00database\x00")...), 0, nil, true},
		{"bytes after terminator", packet(3<<16, []byte("user\x00bob\x00\x00junk")...), 0, nil, true},
		{"length too small", []byte{0, 0, 0, 4, 0, 3, 0, 0}, 0, nil, true},
		{"length too large", []byte{0, 0, 0x27, 0x11, 0, 3, 0, 0}, 0, nil, true},
		{"negative length", []byte{0xff, 0xff, 0xff, 0xff}, 0, nil, true},
		{"truncated", postgres.EncodeStartup(3<<16, params)[:20], 0, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, got, err := postgres.StartupPacket(bytes.NewReader(tc.in))
			if tc.wantErr {
				if err == nil {
					t.Fatalf("accepted: code %d params %q", code, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if code != tc.wantCode || !slices.Equal(got, tc.wantParams) {
				t.Fatalf("code %d params %q, want %d %q", code, got, tc.wantCode, tc.wantParams)
			}
		})
	}
}

func TestStartupPacketEOF(t *testing.T) {
	if _, _, err := postgres.StartupPacket(bytes.NewReader(nil)); err != io.EOF {
		t.Fatalf("empty stream: %v, want io.EOF (a routine disconnect)", err)
	}
}
