package testenv

import (
	"context"
	"os"
	"path/filepath"
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

// SaveScreenshot writes a PNG a person can open, creating its folder.
func SaveScreenshot(t testing.TB, path string, png []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatalf("testenv: screenshot dir: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatalf("testenv: write screenshot: %v", err)
	}
	t.Logf("screenshot saved: %s", path)
}
