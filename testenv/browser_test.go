package testenv

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Without CANAL_SCREENSHOTS a screenshot lands outside the module, so a
// test run leaves the source tree as it was.
func TestSaveScreenshotWritesOutsideTheTree(t *testing.T) {
	if os.Getenv(ScreenshotsEnv) != "" {
		t.Skipf("%s is set: screenshots go where it says", ScreenshotsEnv)
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root %s: %v", root, err)
	}
	SaveScreenshot(t, "testenv-check.png", []byte("\x89PNG"))
	path := filepath.Join(ScreenshotDir(t), "testenv-check.png")
	t.Cleanup(func() { _ = os.Remove(path) })
	if b, err := os.ReadFile(path); err != nil || string(b) != "\x89PNG" {
		t.Fatalf("screenshot at %s: %q, %v", path, b, err)
	}
	if rel, err := filepath.Rel(root, path); err == nil && !strings.HasPrefix(rel, "..") {
		t.Fatalf("screenshot written inside the module: %s", path)
	}
}
