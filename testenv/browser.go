package testenv

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browser starts headless Chromium (from CANAL_TEST_CHROMIUM, or skips) with
// the flags this closed network needs, and returns a chromedp context for one
// tab. The browser is closed when the test ends.
func Browser(t testing.TB) context.Context {
	t.Helper()
	path := Chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1440, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		// Close Chromium gracefully and wait for it: a hard cancel leaves
		// it writing into its profile while the test's TempDir is removed.
		cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
		_ = chromedp.Cancel(cctx)
		ccancel()
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("testenv: start chromium %s: %v", path, err)
	}
	return ctx
}

// NewTab opens another tab in the same browser as ctx.
func NewTab(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(ctx)
	t.Cleanup(cancel)
	if err := chromedp.Run(tab); err != nil {
		t.Fatalf("testenv: open tab: %v", err)
	}
	return tab
}

// ScreenshotsEnv names the folder screenshots are written to; a relative
// path is taken from the module's root, so
// CANAL_SCREENSHOTS=docs/screenshots go test ./web/ ./server/ refreshes the
// committed ones. Unset, they go to a temporary folder each test run logs,
// so tests write nothing into the source tree.
const ScreenshotsEnv = "CANAL_SCREENSHOTS"

var (
	shotsOnce sync.Once
	shotsDir  string
	shotsErr  error
)

// ScreenshotDir is the folder SaveScreenshot writes names to: $CANAL_SCREENSHOTS,
// else one temporary folder for the whole test binary, kept for a person to open.
func ScreenshotDir(t testing.TB) string {
	t.Helper()
	shotsOnce.Do(func() {
		if d := os.Getenv(ScreenshotsEnv); d != "" {
			if !filepath.IsAbs(d) {
				root, err := moduleRoot()
				if err != nil {
					shotsErr = err
					return
				}
				d = filepath.Join(root, d)
			}
			shotsDir, shotsErr = d, os.MkdirAll(d, 0o755)
			return
		}
		shotsDir, shotsErr = os.MkdirTemp("", "canal-screenshots-")
	})
	if shotsErr != nil {
		t.Fatalf("testenv: screenshot folder: %v", shotsErr)
	}
	return shotsDir
}

// moduleRoot is the nearest folder above the working directory (a test's
// package) that holds go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		up := filepath.Dir(dir)
		if up == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = up
	}
}

// SaveScreenshot writes a PNG a person can open and logs where: name in
// ScreenshotDir, or at name itself when it is an absolute path (a test's
// own t.ArtifactDir, say).
func SaveScreenshot(t testing.TB, name string, png []byte) {
	t.Helper()
	path := name
	if !filepath.IsAbs(name) {
		path = filepath.Join(ScreenshotDir(t), name)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("testenv: screenshot dir: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("testenv: write screenshot: %v", err)
	}
	t.Logf("screenshot saved: %s", path)
}
