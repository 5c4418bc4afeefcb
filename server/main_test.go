package server_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The canal binary, built once for every test of the package that runs it
// (a build takes tens of seconds on a loaded 2-core machine), in a folder
// TestMain removes.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binBuild error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "canal-server-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "server tests:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// buildCanal compiles the real program the first time a test asks and
// returns its path; every later call gets the same binary.
func buildCanal(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binPath = filepath.Join(binDir, "canal")
		cmd := exec.Command("go", "build", "-o", binPath, "github.com/canalhq/canal")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // the default build has no cgo
		if out, err := cmd.CombinedOutput(); err != nil {
			binBuild = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binBuild != nil {
		t.Fatal(binBuild)
	}
	return binPath
}
