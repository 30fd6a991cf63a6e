package pgmsg

import "encoding/binary"

// Formats is a list of format codes as sent in Bind: none (every value in
// text), one (for every value) or one per value.
type Formats struct{ raw []byte }

// FormatsOf returns the list of codes (for tests and callers holding
// decoded codes).
func FormatsOf(codes []int16) Formats {
	raw := make([]byte, 0, 2*len(codes))
	for _, c := range codes {
		raw = AppendInt16(raw, c)
	}
	return Formats{raw: raw}
}

// Len is the number of codes in the list.
func (f Formats) Len() int { return len(f.raw) / 2 }

// At is code i of the list, 0 <= i < Len().
func (f Formats) At(i int) int16 { return int16(binary.BigEndian.Uint16(f.raw[2*i:])) }

// For is the format of value i under the protocol's rules: text when the
// list is empty, its only code when it has one, else code i (text when
// there is none, which the server rejects).
func (f Formats) For(i int) int16 {
	switch n := f.Len(); {
	case n == 0:
		return FormatText
	case n == 1:
		return f.At(0)
	case i < n:
		return f.At(i)
	}
	return FormatText
}

// AppendInt16s appends the codes to dst (for a caller that keeps them past
// the message).
func (f Formats) AppendInt16s(dst []int16) []int16 {
	for i := range f.Len() {
		dst = append(dst, f.At(i))
	}
	return dst
}

// AppendFormats appends a format-code list (its count, then the codes).
func AppendFormats(dst []byte, f Formats) []byte {
	dst = AppendCount(dst, f.Len())
	return append(dst, f.raw...)
}

// AppendFormatCodes appends a format-code list given as codes.
func AppendFormatCodes(dst []byte, codes []int16) []byte {
	dst = AppendCount(dst, len(codes))
	for _, c := range codes {
		dst = AppendInt16(dst, c)
	}
	return dst
}

func readFormats(r *reader) Formats {
	n := int(r.uint16())
	return Formats{raw: r.bytes(2 * n)}
}

// OIDs is a list of type OIDs (Parse parameter types, ParameterDescription).
type OIDs struct{ raw []byte }

// Len is the number of OIDs.
func (o OIDs) Len() int { return len(o.raw) / 4 }

// At is OID i, 0 <= i < Len().
func (o OIDs) At(i int) uint32 { return binary.BigEndian.Uint32(o.raw[4*i:]) }

// Bytes is the list as sent (4 bytes per OID, without its count).
func (o OIDs) Bytes() []byte { return o.raw }

func readOIDs(r *reader) OIDs {
	n := int(r.uint16())
	return OIDs{raw: r.bytes(4 * n)}
}

// AppendOIDs appends a list of OIDs (its int16 count, then the OIDs).
func AppendOIDs(dst []byte, oids []uint32) []byte {
	dst = AppendCount(dst, len(oids))
	for _, o := range oids {
		dst = AppendUint32(dst, o)
	}
	return dst
}
