package audit

import (
	"encoding/hex"
	"time"

	"github.com/dbproxy/dbproxy/proxy"
)

// KeyName is the reserved data key the audit MAC key is derived from;
// keys init creates it (AES-256-SIV) when the configuration has an audit:
// section. No encryption rule may use it.
const KeyName = "_audit"

// Event types (docs/audit.md lists their fields).
const (
	TypeChainStart     = "chain_start"     // first event of a chain or of a file
	TypeDropped        = "dropped"         // Count events lost to a full buffer or a failed write
	TypeUnwrap         = "unwrap"          // one master key call unwrapping a data key version
	TypeLogin          = "login"           // a client logged in through the proxy
	TypeFirstUse       = "first_use"       // a session's first use of (op, column, key version)
	TypeDenied         = "denied"          // a use of a column's key refused by policy
	TypeSessionSummary = "session_summary" // a session's key use since its last summary
	TypeSessionEnd     = "session_end"     // the last summary of a session
	TypeKeyAdmin       = "key_admin"       // a keys command (init, rotate, rewrap, retire)
)

// Outcomes.
const (
	OutcomeOK      = "ok"
	OutcomeError   = "error"
	OutcomeRefused = "refused"
)

// Event is one line of the audit file. Seq, KeyVersion and (when zero)
// Time are set by the writer; the other fields depend on Type and are left
// out when empty. No field ever holds a value of a column or key material.
type Event struct {
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"ts"`
	Type       string    `json:"type"`
	KeyVersion uint32    `json:"kv"` // version of the audit key that made mac

	// chain_start: where the chain continues from (zero and "" for the
	// first event of a chain) and why a new file starts.
	PrevSeq uint64 `json:"prev_seq,omitempty"`
	PrevMAC string `json:"prev_mac,omitempty"`
	Reason  string `json:"reason,omitempty"`
	File    string `json:"file,omitempty"`
	// dropped: how many events were lost.
	Count uint64 `json:"count,omitempty"`

	Principal *Principal `json:"principal,omitempty"`
	Outcome   string     `json:"outcome,omitempty"`
	Error     string     `json:"error,omitempty"`

	// unwrap, first_use, denied, key_admin: the data key.
	Command     string  `json:"command,omitempty"`
	Key         string  `json:"key,omitempty"`
	Version     uint32  `json:"version,omitempty"`
	MasterKeyID string  `json:"master_key_id,omitempty"`
	LatencyMS   float64 `json:"latency_ms,omitempty"`

	// first_use, denied: the operation and the column.
	Op     string `json:"op,omitempty"`
	Column string `json:"column,omitempty"`

	// session_summary, session_end: the period covered and the uses in it.
	Since   *time.Time    `json:"since,omitempty"`
	Columns []ColumnCount `json:"columns,omitempty"`
}

// Principal is who a session is (proxy.Principal, as logged).
type Principal struct {
	Listener   string `json:"listener"`
	Session    uint64 `json:"session"`
	User       string `json:"user"`
	Database   string `json:"database,omitempty"`
	Client     string `json:"client,omitempty"`
	TLSSubject string `json:"tls_subject,omitempty"`
	TLSSPKI    string `json:"tls_spki_sha256,omitempty"`
}

// ColumnCount is a session's use of one column's key for one operation in
// a summary's period.
type ColumnCount struct {
	Op      string `json:"op"`
	Column  string `json:"column"`
	Key     string `json:"key"`
	Version uint32 `json:"version"` // the newest version used
	Values  uint64 `json:"values"`  // values encrypted, matched or decrypted
	Bytes   uint64 `json:"bytes"`   // their plaintext bytes
	Errors  uint64 `json:"errors,omitempty"`
	Refused uint64 `json:"refused,omitempty"`
}

// NewPrincipal is p as logged.
func NewPrincipal(p proxy.Principal) *Principal {
	out := &Principal{Listener: p.Listener, Session: p.SessionID, User: p.User, Database: p.Database,
		TLSSubject: p.CertSubject}
	if p.Client.IsValid() {
		out.Client = p.Client.String()
	}
	if p.HasCert() {
		out.TLSSPKI = hex.EncodeToString(p.CertSPKI[:])
	}
	return out
}

// KeyAdmin is the event of a keys command on data key key (version: the
// version it made, if any; "" and 0 for commands on every key).
func KeyAdmin(command, key string, version uint32, err error) Event {
	e := Event{Type: TypeKeyAdmin, Command: command, Key: key, Version: version, Outcome: OutcomeOK}
	if err != nil {
		e.Outcome, e.Error = OutcomeError, err.Error()
	}
	return e
}

// Unwrap is the event of one master key call that unwrapped (or failed to
// unwrap) version of data key key.
func Unwrap(key string, version uint32, masterKeyID string, d time.Duration, err error) Event {
	e := Event{Type: TypeUnwrap, Key: key, Version: version, MasterKeyID: masterKeyID,
		LatencyMS: float64(d.Microseconds()) / 1000, Outcome: OutcomeOK}
	if err != nil {
		e.Outcome, e.Error = OutcomeError, err.Error()
	}
	return e
}
