package value

import "fmt"

// Type is a plaintext type of docs/config.md. The zero value is invalid, so a
// Type nobody filled in fails closed.
type Type uint8

// The numeric values are the plaintext type codes stored in byte 6 of every
// ciphertext header (docs/ciphertext.md). They are part of the on-disk format:
// never renumber, only append.
const (
	TypeUnknown     Type = 0
	TypeText        Type = 1
	TypeSmallint    Type = 2
	TypeInt         Type = 3
	TypeBigint      Type = 4
	TypeReal        Type = 5
	TypeDouble      Type = 6
	TypeNumeric     Type = 7
	TypeBoolean     Type = 8
	TypeDate        Type = 9
	TypeTimestamp   Type = 10
	TypeTimestamptz Type = 11
	TypeUUID        Type = 12
	TypeBytes       Type = 13
	TypeJSON        Type = 14
)

var typeNames = [...]string{
	TypeUnknown:     "unknown",
	TypeText:        "text",
	TypeSmallint:    "smallint",
	TypeInt:         "int",
	TypeBigint:      "bigint",
	TypeReal:        "real",
	TypeDouble:      "double",
	TypeNumeric:     "numeric",
	TypeBoolean:     "boolean",
	TypeDate:        "date",
	TypeTimestamp:   "timestamp",
	TypeTimestamptz: "timestamptz",
	TypeUUID:        "uuid",
	TypeBytes:       "bytes",
	TypeJSON:        "json",
}

// TypeNames lists the names ParseType accepts, in type-code order.
func TypeNames() []string {
	return append([]string(nil), typeNames[1:]...)
}

// ParseType maps a config type name to its Type.
func ParseType(name string) (Type, error) {
	for i, n := range typeNames {
		if i != 0 && n == name {
			return Type(i), nil
		}
	}
	return TypeUnknown, fmt.Errorf("unknown plaintext type %q", name)
}

// TypeFromCode maps a ciphertext header type code back to its Type.
func TypeFromCode(code byte) (Type, error) {
	if code == 0 || int(code) >= len(typeNames) {
		return TypeUnknown, fmt.Errorf("unknown plaintext type code %d", code)
	}
	return Type(code), nil
}

// Code is the byte stored in the ciphertext header.
func (t Type) Code() byte { return byte(t) }

// Valid reports whether t is one of the defined types.
func (t Type) Valid() bool { return t != TypeUnknown && int(t) < len(typeNames) }

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}
