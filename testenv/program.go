package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// Program is a Go program built once for all the tests of one test binary
// that run it (a build takes tens of seconds on a loaded 2-core machine),
// with cgo off as in the default build. Declare one per package and call
// Remove from TestMain after m.Run.
type Program struct {
	pkg  string
	once sync.Once
	dir  string
	path string
	err  error
}

// NewProgram is the program of the Go package pkg ("github.com/canalhq/canal").
func NewProgram(pkg string) *Program { return &Program{pkg: pkg} }

// Path builds the program the first time a test asks and returns its
// path; every later call gets the same binary. Skipped with -short.
func (p *Program) Path(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the program; skipped with -short")
	}
	p.once.Do(func() {
		if p.dir, p.err = os.MkdirTemp("", "canal-program-"); p.err != nil {
			return
		}
		p.path = filepath.Join(p.dir, filepath.Base(p.pkg))
		cmd := exec.Command("go", "build", "-o", p.path, p.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			p.err = fmt.Errorf("go build %s: %v\n%s", p.pkg, err, out)
		}
	})
	if p.err != nil {
		t.Fatal(p.err)
	}
	return p.path
}

// Remove deletes the built program, if any.
func (p *Program) Remove() {
	if p.dir != "" {
		_ = os.RemoveAll(p.dir)
	}
}
