package keystore

import (
	"time"

	"github.com/dbproxy/dbproxy/crypto"
)

// Record is one version of one named data key, as stored: only ever the
// wrapped (encrypted) key material, never the key itself.
//
// The primary version of a key is its highest version: rotation adds a new
// version, so "which version is primary" can never disagree between two
// proxy instances reading the same store.
type Record struct {
	Name        string           `json:"name"`
	Version     uint32           `json:"version"`
	Algorithm   crypto.Algorithm `json:"algorithm"`
	CreatedAt   time.Time        `json:"created_at"`
	MasterKeyID string           `json:"master_key_id"`
	Wrapped     []byte           `json:"wrapped"`
}
