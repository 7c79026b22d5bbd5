package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/certd/certd/store"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func versionString() string {
	return fmt.Sprintf("certd %s (%s, store schema %d)", buildVersion(), runtime.Version(), store.SchemaVersion())
}

// buildVersion is the release, or "devel".
func buildVersion() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v = bi.Main.Version
		}
	}
	return v
}
