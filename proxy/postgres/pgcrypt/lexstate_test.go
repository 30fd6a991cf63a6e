package pgcrypt

import (
	"strings"
	"testing"
)

func TestLexChanges(t *testing.T) {
	cases := []struct {
		text       string
		inTx, want bool
	}{
		{`SET "client_encoding" = sjis`, false, true},
		{`SET U&"client\005fencoding" = sjis`, false, true}, // starts with SET
		{"SHOW standard_conforming_strings", false, true},   // conservative: any mention
		{"SET client_encoding TO 'SJIS'", false, true},
		{"set names 'SJIS'", false, true},
		{"/* c */ RESET ALL", false, true},
		{"DISCARD ALL", false, true},
		{"SELECT set_config('client_encoding', 'SJIS', false)", false, true},
		{"SELECT pg_catalog.set_config($1, $2, false)", false, true},
		{"UPDATE users SET name = 'x'", false, false},
		{"SELECT 'SET client' FROM t", false, false},
		{"INSERT INTO t VALUES (1)", false, false},
		{"COMMIT", false, false},
		{"COMMIT", true, true},
		{"  end", true, true},
		{"ROLLBACK TO SAVEPOINT a", true, true},
		{"CALL p()", true, true},
		{"SELECT 1", true, false},
		{"INSERT INTO t VALUES ('commit')", true, false},
	}
	for _, tc := range cases {
		s := &session{lex: lexSettings{clientEncoding: "UTF8"}}
		s.lex.inTx.Store(tc.inTx)
		text := []byte(tc.text)
		if got := s.lexChanges(text, sessionWords.scan(text)); got != tc.want {
			t.Errorf("lexChanges(%q, in a transaction %v) = %v, want %v", tc.text, tc.inTx, got, tc.want)
		}
	}
	// Text that cannot be split with certainty counts when it has a SET.
	s := &session{lex: lexSettings{clientEncoding: "SJIS"}}
	text := []byte("SELECT E'\x83\\'; SET client_encoding = 'UTF8' --'")
	if !s.lexChanges(text, sessionWords.scan(text)) {
		t.Error("SET after an SJIS string not seen")
	}
}

func TestEncodingRefusal(t *testing.T) {
	for _, enc := range []string{"SJIS", "SHIFT_JIS_2004", "BIG5", "GBK", "UHC", "GB18030", "JOHAB", "", "KLINGON"} {
		if safeEncoding(enc) {
			t.Errorf("%q counted as safe", enc)
		}
		e := encodingRefusal(enc)
		if e.Code != "0A000" || !strings.Contains(e.Message, "client_encoding") || !strings.Contains(e.Message, "use client_encoding UTF8") {
			t.Errorf("%q: refusal %+v", enc, e)
		}
	}
	for _, enc := range []string{"UTF8", "SQL_ASCII", "LATIN1", "LATIN10", "WIN1252", "WIN866", "EUC_JP", "EUC_TW", "KOI8R", "ISO_8859_5", "MULE_INTERNAL"} {
		if !safeEncoding(enc) {
			t.Errorf("%q counted as unsafe", enc)
		}
	}
}
