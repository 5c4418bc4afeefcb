// Package e2e runs the real canal binary, built once for the whole package,
// as an operator would: replicas started together, a process's log read
// line by line.
package e2e

import (
	"os"
	"testing"

	"github.com/canalhq/canal/testenv"
)

var canal = testenv.NewProgram("github.com/canalhq/canal")

func TestMain(m *testing.M) {
	code := m.Run()
	canal.Remove()
	os.Exit(code)
}

// canalBinary returns the path of the built program.
func canalBinary(t *testing.T) string { return canal.Path(t) }
