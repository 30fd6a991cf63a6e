package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// DefaultSummaryInterval is audit.summary_interval when unset.
const DefaultSummaryInterval = 60 * time.Second

// AuditKeyName is the data key the audit chain's MAC key is derived from
// (keys init creates it when audit: is set); no column may use it.
const AuditKeyName = "_audit"

// Audit is the tamper-evident audit log of key use (docs/audit.md).
type Audit struct {
	// File is the JSON Lines audit file; its directory must exist.
	File string `yaml:"file"`
	// SummaryInterval is how often each session's key use is summarized
	// (and once more at its end).
	SummaryInterval time.Duration `yaml:"summary_interval"`
}

// audit checks the audit section, and that no column uses the audit key.
func (d *decoder) audit(c *Config) {
	for i, t := range c.Encryption {
		for j, col := range t.Columns {
			if col.Key == AuditKeyName {
				d.errf(fmt.Sprintf("encryption[%d].columns[%d].key", i, j),
					"data key name %q is reserved for the audit log", AuditKeyName)
			}
		}
	}
	a := c.Audit
	if a == nil {
		return
	}
	if !d.isSet("keys") {
		d.errf("audit", "requires a keys: section: the audit key %s is kept in the keystore", AuditKeyName)
	}
	d.positiveDuration(&a.SummaryInterval, "audit.summary_interval", DefaultSummaryInterval)
	if a.File == "" {
		d.errf("audit.file", "required: the audit log file (JSON Lines)")
		return
	}
	a.File = d.resolve(a.File)
	dir := filepath.Dir(a.File)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		d.errf("audit.file", "directory %s does not exist", dir)
	case err != nil:
		d.errf("audit.file", "cannot access %s: %v", dir, unwrapPathError(err))
	case !fi.IsDir():
		d.errf("audit.file", "%s is not a directory", dir)
	}
	if fi, err := os.Stat(a.File); err == nil && !fi.Mode().IsRegular() {
		d.errf("audit.file", "%s is not a regular file", a.File)
	}
}
