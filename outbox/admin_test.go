package outbox

import (
	"context"
	"errors"
	"testing"

	"gorm.io/gorm"
)

func TestAdminListGetRetryDelete(t *testing.T) {
	dialects(t, func(t *testing.T, db *gorm.DB) {
		ctx := context.Background()
		r := newRelay(t, db, testConfig())
		a := addN(t, r, "alpha", nil, 5)
		b := addN(t, r, "beta", nil, 2)
		// Make one beta message dead and one alpha dispatched by hand, as the
		// relay would, to test the admin methods without running it.
		now := r.now().UnixMicro()
		setStatus := func(id string, st Status) {
			state := map[Status]string{StatusDead: "dead", StatusDispatched: "done"}[st]
			if err := db.Exec(`UPDATE canal_queue_items SET state = ?, finished_us = ? WHERE public_id = ?`, state, now, id).Error; err != nil {
				t.Fatal(err)
			}
		}
		setStatus(b[0], StatusDead)
		setStatus(a[0], StatusDispatched)

		// Keyset paging, newest first, across pages.
		var got []string
		cursor := int64(0)
		for pages := 0; ; pages++ {
			p, err := r.List(ctx, ListFilter{Limit: 3, Before: cursor})
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range p.Items {
				got = append(got, it.ID)
			}
			if p.Next == "" {
				if pages != 2 {
					t.Errorf("pages = %d, want 3", pages+1)
				}
				break
			}
			var ok bool
			if cursor, ok = ParseCursor(p.Next); !ok {
				t.Fatalf("bad cursor %q", p.Next)
			}
		}
		all := append(append([]string{}, a...), b...)
		if len(got) != len(all) {
			t.Fatalf("listed %d, want %d", len(got), len(all))
		}
		for i := range got {
			if got[i] != all[len(all)-1-i] {
				t.Fatalf("order: got %v, want newest first of %v", got, all)
			}
		}

		filters := []struct {
			name string
			f    ListFilter
			want int
		}{
			{"dead", ListFilter{Status: StatusDead}, 1},
			{"pending alpha", ListFilter{Status: StatusPending, Topic: "alpha"}, 4},
			{"topic beta", ListFilter{Topic: "beta"}, 2},
			{"nothing", ListFilter{Topic: "gamma"}, 0},
		}
		for _, tc := range filters {
			p, err := r.List(ctx, tc.f)
			if err != nil || len(p.Items) != tc.want {
				t.Errorf("%s: %d items, err %v; want %d", tc.name, len(p.Items), err, tc.want)
			}
		}
		if _, err := r.List(ctx, ListFilter{Status: "weird"}); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("bad status: err = %v", err)
		}
		if _, err := r.List(ctx, ListFilter{Limit: MaxPage + 1}); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("big limit: err = %v", err)
		}

		errCases := []struct {
			name string
			call func() error
			want error
		}{
			{"get unknown", func() error { _, err := r.Get(ctx, "nope"); return err }, ErrNotFound},
			{"retry unknown", func() error { _, err := r.Retry(ctx, "nope"); return err }, ErrNotFound},
			{"retry dispatched", func() error { _, err := r.Retry(ctx, a[0]); return err }, ErrNotRetryable},
			{"delete unknown", func() error { return r.Delete(ctx, "nope") }, ErrNotFound},
			// Bytes PostgreSQL refuses in text name no message: not found,
			// not a driver error.
			{"get NUL id", func() error { _, err := r.Get(ctx, "\x00"); return err }, ErrNotFound},
			{"retry invalid UTF-8 id", func() error { _, err := r.Retry(ctx, "\xff"); return err }, ErrNotFound},
			{"delete NUL id", func() error { return r.Delete(ctx, "a\x00") }, ErrNotFound},
			{"list NUL topic", func() error { _, err := r.List(ctx, ListFilter{Topic: "\x00"}); return err }, ErrInvalidFilter},
			{"list NUL key", func() error { _, err := r.List(ctx, ListFilter{Key: "a\x00"}); return err }, ErrInvalidFilter},
			{"list invalid UTF-8 key", func() error { _, err := r.List(ctx, ListFilter{Key: "\xff"}); return err }, ErrInvalidFilter},
			{"retry dead of an invalid UTF-8 topic", func() error { _, err := r.RetryDead(ctx, "\xff"); return err }, ErrInvalidFilter},
			{"delete pending", func() error { return r.Delete(ctx, a[1]) }, ErrNotDead},
			{"delete dispatched", func() error { return r.Delete(ctx, a[0]) }, ErrNotDead},
		}
		for _, tc := range errCases {
			if err := tc.call(); !errors.Is(err, tc.want) {
				t.Errorf("%s: err = %v, want %v", tc.name, err, tc.want)
			}
		}

		if n, err := r.RetryDead(ctx, "alpha"); err != nil || n != 0 {
			t.Errorf("RetryDead(alpha) = %d, %v; want 0", n, err)
		}
		if n, err := r.RetryDead(ctx, ""); err != nil || n != 1 {
			t.Errorf("RetryDead(all) = %d, %v; want 1", n, err)
		}
		if st := statusOf(t, r, b[0]); st != StatusPending {
			t.Errorf("after RetryDead: %s", st)
		}
		setStatus(b[0], StatusDead)
		if err := r.Delete(ctx, b[0]); err != nil {
			t.Fatalf("Delete dead: %v", err)
		}
		if _, err := r.Get(ctx, b[0]); !errors.Is(err, ErrNotFound) {
			t.Errorf("after Delete: err = %v", err)
		}

		s, err := r.Stats(ctx)
		if err != nil || s.Pending != 5 || s.Dispatched != 1 || s.Dead != 0 || s.OldestPendingSeconds < 0 {
			t.Errorf("Stats = %+v, %v", s, err)
		}
	})
}
