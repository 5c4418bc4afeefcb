package bench

import (
	"errors"
	"testing"
	"time"
)

func TestSoakGrowth(t *testing.T) {
	const mb = 1 << 20
	// series builds samples every 10 s whose RSS (and WAL) follow f.
	series := func(n int, rss, wal func(i int) int64) []soakSample {
		var ss []soakSample
		for i := range n {
			ss = append(ss, soakSample{at: time.Duration(i) * 10 * time.Second, rss: rss(i), heap: 8 * mb, sqliteMem: -1, wal: wal(i)})
		}
		return ss
	}
	flat := func(int) int64 { return 100 * mb }
	for _, tc := range []struct {
		name     string
		samples  []soakSample
		warmup   time.Duration
		wantRSS  float64 // MB
		wantWAL  float64
		wantErr  error
		wantKeys int
	}{
		{"flat", series(30, flat, flat), time.Minute, 0, 0, nil, 3},
		{"climbing RSS", series(30, func(i int) int64 { return int64(100+i) * mb }, flat), time.Minute, 12, 0, nil, 3},
		// The warm-up's climb is left out.
		{"warm-up climb then flat", series(30, func(i int) int64 { return int64(min(i, 6)*50+100) * mb }, flat), time.Minute, 0, 0, nil, 3},
		// A WAL that saws between 0 and 60 MB is bounded: flat.
		{"sawtooth WAL", series(30, flat, func(i int) int64 { return int64(i%3) * 30 * mb }), time.Minute, 0, 0, nil, 3},
		{"too few samples", series(8, flat, flat), time.Minute, 0, 0, ErrUsage, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := soakGrowth(tc.samples, tc.warmup)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if len(got) != tc.wantKeys {
				t.Fatalf("%d series, want %d (sqlite_mem is not measured): %v", len(got), tc.wantKeys, got)
			}
			for _, g := range got {
				want := 0.0
				switch g.name {
				case "rss":
					want = tc.wantRSS
				case "wal":
					want = tc.wantWAL
				}
				if g.mb != want {
					t.Errorf("%s growth = %g MB, want %g", g.name, g.mb, want)
				}
			}
		})
	}
}
