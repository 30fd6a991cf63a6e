package pgmsg

var errFunctionCall = &MalformedError{Message: "FunctionCall"}

// FunctionCall is a view of a FunctionCall (fast-path) message body.
type FunctionCall struct {
	Function     uint32 // the OID of the function
	ArgFormats   Formats
	args         []byte
	numArgs      int
	ResultFormat int16
}

// ParseFunctionCall decodes a FunctionCall body.
func ParseFunctionCall(body []byte) (FunctionCall, error) {
	return decode(body, errFunctionCall, func(r *reader) (f FunctionCall) {
		f.Function = r.uint32()
		f.ArgFormats = readFormats(r)
		f.numArgs, f.args = readValues(r)
		f.ResultFormat = int16(r.uint16())
		return f
	})
}

// NumArgs is the number of arguments.
func (f *FunctionCall) NumArgs() int { return f.numArgs }

// Args walks the arguments.
func (f *FunctionCall) Args() Values { return NewValues(f.args, f.numArgs) }
