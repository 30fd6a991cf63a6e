package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/dbproxy/dbproxy/audit"
	"github.com/dbproxy/dbproxy/config"
	"github.com/dbproxy/dbproxy/crypto/keys"
)

// keysAuditing records what a keys command does (and the unwraps it
// makes) and appends it to the audit file once the command is done. The
// zero value (no audit: section, or keys list) records nothing.
type keysAuditing struct {
	*auditing
	file    string
	pending *pending
	kv      uint32
	key     []byte
}

func keysAudit(cfg *config.Config, sub string) *keysAuditing {
	if cfg.Audit == nil || sub == "list" {
		return &keysAuditing{}
	}
	p := &pending{}
	return &keysAuditing{auditing: &auditing{out: p}, file: cfg.Audit.File, pending: p}
}

// before derives the audit key, except for init, which may create it: a
// command other than init does nothing when it could not be audited.
func (k *keysAuditing) before(ctx context.Context, sub string, mgr *keys.Manager) error {
	if k.auditing == nil || sub == "init" {
		return nil
	}
	var err error
	k.kv, k.key, err = auditMACKey(ctx, mgr)
	return err
}

// after appends the recorded events to the audit file; cmdErr is the
// command's own error, returned with the audit's.
func (k *keysAuditing) after(ctx context.Context, mgr *keys.Manager, cmdErr error) error {
	if k.auditing == nil {
		return cmdErr
	}
	if k.key == nil {
		var err error
		if k.kv, k.key, err = auditMACKey(ctx, mgr); err != nil {
			return errors.Join(cmdErr, err)
		}
	}
	defer clear(k.key)
	if err := audit.Append(k.file, k.key, k.kv, k.pending.take()...); err != nil {
		return errors.Join(cmdErr, fmt.Errorf("audit: %w", err))
	}
	return cmdErr
}
