package pgmsg

// The type byte of a message depends on its direction: 'D' is Describe from
// the client and DataRow from the server, 'C' Close and CommandComplete,
// 'E' Execute and ErrorResponse, 'S' Sync and ParameterStatus, 'H' Flush and
// CopyOutResponse.

// Frontend (client to server) message types.
const (
	TypeBind         byte = 'B'
	TypeClose        byte = 'C'
	TypeDescribe     byte = 'D'
	TypeExecute      byte = 'E'
	TypeFunctionCall byte = 'F'
	TypeFlush        byte = 'H'
	TypeParse        byte = 'P'
	TypeQuery        byte = 'Q'
	TypeSync         byte = 'S'
	TypeTerminate    byte = 'X'
	TypeCopyFail     byte = 'f'
	// TypePassword is every authentication response: PasswordMessage,
	// SASLInitialResponse, SASLResponse, GSSResponse.
	TypePassword byte = 'p'
)

// Backend (server to client) message types.
const (
	TypeParseComplete            byte = '1'
	TypeBindComplete             byte = '2'
	TypeCloseComplete            byte = '3'
	TypeNotificationResponse     byte = 'A'
	TypeCommandComplete          byte = 'C'
	TypeDataRow                  byte = 'D'
	TypeErrorResponse            byte = 'E'
	TypeCopyInResponse           byte = 'G'
	TypeCopyOutResponse          byte = 'H'
	TypeEmptyQueryResponse       byte = 'I'
	TypeBackendKeyData           byte = 'K'
	TypeNoticeResponse           byte = 'N'
	TypeAuthentication           byte = 'R'
	TypeParameterStatus          byte = 'S'
	TypeRowDescription           byte = 'T'
	TypeFunctionCallResponse     byte = 'V'
	TypeCopyBothResponse         byte = 'W'
	TypeReadyForQuery            byte = 'Z'
	TypeNoData                   byte = 'n'
	TypePortalSuspended          byte = 's'
	TypeParameterDescription     byte = 't'
	TypeNegotiateProtocolVersion byte = 'v'
)

// Message types of both directions (COPY data flows either way).
const (
	TypeCopyData byte = 'd'
	TypeCopyDone byte = 'c'
)

// Object kinds named by Describe and Close.
const (
	ObjectStatement byte = 'S'
	ObjectPortal    byte = 'P'
)

// Format codes of parameters and result columns.
const (
	FormatText   int16 = 0
	FormatBinary int16 = 1
)

// Transaction status of ReadyForQuery.
const (
	TxIdle   byte = 'I'
	TxBlock  byte = 'T'
	TxFailed byte = 'E'
)
