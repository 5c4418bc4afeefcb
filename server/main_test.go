package server_test

import (
	"os"
	"testing"

	"github.com/canalhq/canal/testenv"
)

// canal is the real program, built once for every test of the package
// that runs it.
var canal = testenv.NewProgram("github.com/canalhq/canal")

func TestMain(m *testing.M) {
	code := m.Run()
	canal.Remove()
	os.Exit(code)
}

// buildCanal returns the path of the built program.
func buildCanal(t *testing.T) string { return canal.Path(t) }
