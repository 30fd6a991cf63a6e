package mysqlsql

// Test hooks for the black-box tests.
var (
	MentionsDynamic = mentionsDynamic
	DDLStart        = ddlStart
)
