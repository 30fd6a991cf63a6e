package main

import (
	"fmt"
	"log/slog"

	"github.com/dbproxy/dbproxy/proxy/mysql/mycrypt"
	"github.com/dbproxy/dbproxy/rules"
)

// mysqlInterceptor returns the encryption layer of one MySQL listener: the
// same columns and keys as the PostgreSQL listeners, matched with MySQL's
// identifier rules.
func (x *encryption) mysqlInterceptor(log *slog.Logger) (*mycrypt.Interceptor, error) {
	set, err := rules.New(rules.DialectMySQL, x.specs)
	if err != nil {
		return nil, fmt.Errorf("encryption rules for mysql: %w", err)
	}
	return mycrypt.New(mycrypt.Options{Rules: set, Encryptor: x.enc, Logger: log})
}
