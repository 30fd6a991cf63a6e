package access

// Glob exposes glob to the tests.
var Glob = glob
