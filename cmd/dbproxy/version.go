package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
// commit, when set the same way (-X main.commit=…), names the source
// revision where the build has no VCS information (Docker builds copy the
// tree without .git).
var (
	version = "dev"
	commit  = ""
)

func cmdVersion(args []string, e env) error {
	if len(args) > 0 {
		return usagef("version takes no arguments")
	}
	rev, modified := "unknown", false
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if rev == "unknown" && commit != "" {
		rev = commit
	}
	if modified {
		rev += "-dirty"
	}
	fmt.Fprintf(e.stdout, "dbproxy %s\ncommit %s\n%s %s/%s\n", version, rev, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return nil
}
