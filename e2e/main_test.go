// Package e2e runs the real canal binary, built once for the whole package,
// as an operator would: replicas started together, a process's log read
// line by line.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var (
	binDir   string // TestMain's, removed when the tests end
	build    sync.Once
	bin      string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "canal-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// canalBinary builds the program the first time a test asks, once for
// every test of the package.
func canalBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the binary; skipped with -short")
	}
	build.Do(func() {
		bin = filepath.Join(binDir, "canal")
		cmd := exec.Command("go", "build", "-o", bin, "github.com/canalhq/canal")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0") // the default build has no cgo
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return bin
}
