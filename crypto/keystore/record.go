package keystore

import (
	"time"

	"github.com/dbproxy/dbproxy/crypto"
)

// Record is one version of one named data key, as stored: only ever the
// wrapped (encrypted) key material, never the key itself.
//
// Rotation adds a new version; which version is primary (the highest one
// past its activation delay after CreatedAt) is decided by package keys
// from these fields alone, so readers of one store agree on it, given
// synchronized clocks.
type Record struct {
	Name        string           `json:"name"`
	Version     uint32           `json:"version"`
	Algorithm   crypto.Algorithm `json:"algorithm"`
	CreatedAt   time.Time        `json:"created_at"`
	MasterKeyID string           `json:"master_key_id"`
	Wrapped     []byte           `json:"wrapped"`
}
