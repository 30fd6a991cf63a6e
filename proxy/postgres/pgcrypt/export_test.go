package pgcrypt

// Exported for the black-box tests.
var (
	NumericTextToBinary = numericTextToBinary
	NumericBinaryToText = numericBinaryToText
)

// ArrayElems lists the non-NULL elements of an array value.
func ArrayElems(src []byte, format int16) ([]string, error) {
	var out []string
	err := arrayElems(src, format, func(e []byte, _ bool) error {
		out = append(out, string(e))
		return nil
	})
	return out, err
}
