package mycrypt

import (
	"encoding/binary"
	"fmt"
)

// A column definition (ColumnDefinition41) is
//
//	lenenc catalog, schema, table, org_table, name, org_name ||
//	[lenenc extended_metadata, with mysql.MariaDBExtendedMetadata] ||
//	lenenc fixedFieldsLen (0x0c) ||
//	uint16 charset || uint32 length || uint8 type || uint16 flags ||
//	uint8 decimals || 2 filler ||
//	[default values, in COM_FIELD_LIST answers]
//
// go-mysql's mysql.Field does not serve here: it does not know MariaDB's
// extended metadata (it reads that field's length byte as the 0x0c),
// indexes the fixed fields without bounds checks, and its Dump writes
// the catalog as "def", no extended metadata, and allocates per field.
// columnDef is a view over the payload instead: parsing it allocates
// nothing, and a rewrite is one append.

// Offsets in a column definition's fixed-length fields.
const (
	fixedCharset  = 0 // uint16 collation id
	fixedLength   = 2 // uint32 column length
	fixedType     = 6 // uint8 MYSQL_TYPE_*
	fixedFlags    = 7 // uint16 *_FLAG
	fixedDecimals = 9 // uint8
	// fixedFieldsLen is the length the 0x0c byte before them announces:
	// the fields above and 2 filler bytes.
	fixedFieldsLen = 12
)

// columnDef is a zero-copy view of a column definition payload.
type columnDef struct {
	payload []byte
	// schema, orgTable and orgName alias payload.
	schema, orgTable, orgName []byte
	// extStart and extEnd are the bounds of the extended metadata field
	// (length included); equal without mysql.MariaDBExtendedMetadata.
	extStart, extEnd int
	// fixed is the offset of the fixed-length fields (after the 0x0c).
	fixed int
}

// parseColumnDef reads a column definition; extMeta tells whether it
// carries MariaDB's extended metadata. The byte announcing the fixed
// fields' length is not checked (servers send 0x0c); the fixed fields
// must be there.
func parseColumnDef(payload []byte, extMeta bool) (columnDef, error) {
	d := columnDef{payload: payload}
	p := 0
	for i := range 6 { // catalog, schema, table, org_table, name, org_name
		v, next, _, err := readLenenc(payload, p)
		if err != nil {
			return columnDef{}, err
		}
		switch i {
		case 1:
			d.schema = v
		case 3:
			d.orgTable = v
		case 5:
			d.orgName = v
		}
		p = next
	}
	d.extStart = p
	if extMeta {
		_, next, null, err := readLenenc(payload, p)
		if err != nil {
			return columnDef{}, err
		}
		if null {
			return columnDef{}, fmt.Errorf("NULL extended metadata")
		}
		p = next
	}
	d.extEnd = p
	d.fixed = p + 1
	if len(payload) < d.fixed+fixedFieldsLen {
		return columnDef{}, fmt.Errorf("truncated column definition")
	}
	return d, nil
}

// typ is the column's MYSQL_TYPE_*.
func (d columnDef) typ() byte { return d.payload[d.fixed+fixedType] }

// colAttrs are a column definition's fixed-length attributes.
type colAttrs struct {
	charset  uint16
	length   uint32
	typ      byte
	flags    uint16
	decimals byte
}

// attrs returns the column's fixed-length attributes.
func (d columnDef) attrs() colAttrs {
	f := d.payload[d.fixed:]
	return colAttrs{
		charset:  binary.LittleEndian.Uint16(f[fixedCharset:]),
		length:   binary.LittleEndian.Uint32(f[fixedLength:]),
		typ:      f[fixedType],
		flags:    binary.LittleEndian.Uint16(f[fixedFlags:]),
		decimals: f[fixedDecimals],
	}
}

// appendWith appends the definition to dst with the fixed-length
// attributes a and, if it has extended metadata, ext as that field's
// content; everything else (names, filler, trailing bytes) is copied.
func (d columnDef) appendWith(dst []byte, ext string, a colAttrs) []byte {
	dst = append(dst, d.payload[:d.extStart]...)
	if d.extEnd > d.extStart {
		dst = append(dst, byte(len(ext))) // extended metadata is short: 1-byte length
		dst = append(dst, ext...)
	}
	fixed := len(dst) + d.fixed - d.extEnd
	dst = append(dst, d.payload[d.extEnd:]...)
	f := dst[fixed:]
	binary.LittleEndian.PutUint16(f[fixedCharset:], a.charset)
	binary.LittleEndian.PutUint32(f[fixedLength:], a.length)
	f[fixedType] = a.typ
	binary.LittleEndian.PutUint16(f[fixedFlags:], a.flags)
	f[fixedDecimals] = a.decimals
	return dst
}

// A binary protocol row is
//
//	0x00 || NULL bitmap of (columns+7+2)/8 bytes, bit i+2 for column i ||
//	the values of the non-NULL columns
//
// (the first two bits of the bitmap are reserved).
const binaryRowNullOffset = 2

// binaryRow is a zero-copy view of a binary protocol row.
type binaryRow struct {
	nulls []byte // the NULL bitmap
	// values is the offset of the first value; the header and bitmap
	// before it go to the client unchanged.
	values int
}

// parseBinaryRow reads the header of a row of columns columns. The header
// byte is not checked (the relay classified the packet).
func parseBinaryRow(payload []byte, columns int) (binaryRow, bool) {
	n := (columns + 7 + binaryRowNullOffset) / 8
	if len(payload) < 1+n {
		return binaryRow{}, false
	}
	return binaryRow{nulls: payload[1 : 1+n], values: 1 + n}, true
}

// null tells whether column i is NULL.
func (r binaryRow) null(i int) bool {
	i += binaryRowNullOffset
	return r.nulls[i/8]&(1<<(i%8)) != 0
}

// Offsets in a COM_STMT_PREPARE_OK payload: 0x00 || uint32 statement_id ||
// uint16 num_columns || uint16 num_params || 0x00 || uint16 warnings.
const (
	prepareOKStmtID = 1
	prepareOKParams = 7
	prepareOKLen    = 12
)

// Offsets in COM_STMT_EXECUTE and COM_STMT_SEND_LONG_DATA payloads: the
// command byte || uint32 statement_id || ...
const (
	// executeHeaderLen: || uint8 flags || uint32 iteration_count, then the
	// parameters' NULL bitmap (bit i for parameter i).
	executeHeaderLen = 10
	// longDataParam: || uint16 param_id || data.
	longDataParam = 5
	longDataLen   = 7 // without data
)
