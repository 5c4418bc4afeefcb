package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/canalhq/canal/server"
)

// canalBench runs `canal bench what -db db -n n` through Canal's own entry
// point, in this process, and returns its headline figure (the last line).
func canalBench(ctx context.Context, what, db string, n, workers int, stderr io.Writer) (float64, error) {
	args := []string{"canal", "bench", what, "-db", db, "-n", strconv.Itoa(n)}
	if workers > 0 {
		args = append(args, "-workers", strconv.Itoa(workers))
	}
	var out bytes.Buffer
	if err := server.Run(ctx, args, os.Getenv, &out, stderr); err != nil {
		return 0, err
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	name, v, ok := strings.Cut(lines[len(lines)-1], "=")
	if !ok || name != map[string]string{"outbox": "relay_msgs_per_s", "work": "work_items_per_s"}[what] {
		return 0, fmt.Errorf("unexpected output of canal bench %s: %q", what, out.String())
	}
	return strconv.ParseFloat(v, 64)
}
