// Rendering leaves the hub goroutine: the hub lists what a frame holds (templ
// components built from copies of its state) and who gets it, a renderer
// goroutine renders each fragment once and composes each group's frame, and
// the hub, which alone owns the clients, hands the frames out in order.

package web

import (
	"bytes"
	"context"
)

// renderJob is one frame to render and its recipients, taken when the hub
// made it: a client that connects later is in no earlier job, and gets its
// snapshot (a job of its own) before any later frame.
type renderJob struct {
	clients  []*client
	parts    []part            // page fragments
	wall     []part            // wall fragments
	json     map[string][]byte // already encoded, by topics key
	snapshot bool
	version  uint64 // of the hub's state (snapshots at one version share)
	seq      uint64

	// Filled by the renderer.
	pages map[string][]byte // by topics key
	walls map[string][]byte // by topics key
}

// snapshotCache is the renderer's last snapshot per view, shared by the
// clients that connect while the hub's state stays the same.
type snapshotCache struct {
	version, seq uint64
	pieces       []piece
	wall         []piece
	pages        map[string][]byte
	ok           bool
}

// renderer renders jobs in order until ctx ends.
func (h *Hub) renderer(ctx context.Context, in <-chan *renderJob, out chan<- *renderJob) {
	var snaps [numViews]snapshotCache
	for {
		var job *renderJob
		select {
		case job = <-in:
		case <-ctx.Done():
			return
		}
		h.render(ctx, job, &snaps)
		select {
		case out <- job:
		case <-ctx.Done():
			return
		}
	}
}

func (h *Hub) render(ctx context.Context, job *renderJob, snaps *[numViews]snapshotCache) {
	var cache *snapshotCache
	if job.snapshot && len(job.clients) == 1 {
		cache = &snaps[job.clients[0].view]
		if !cache.ok || cache.version != job.version || cache.seq != job.seq {
			*cache = snapshotCache{version: job.version, seq: job.seq, pages: map[string][]byte{}}
		}
	}
	// Operators' and viewers' pages get the same fragments, rendered once
	// per role: the viewers' without buttons.
	var needPage [numViews]bool
	needWall := false
	for _, c := range job.clients {
		needPage[c.view] = true
		needWall = needWall || c.view == viewWall
	}
	pieces := map[view][]piece{}
	for _, v := range []view{viewPage, viewPageRO} {
		if !needPage[v] {
			continue
		}
		if cache != nil && cache.ok {
			pieces[v] = cache.pieces
			continue
		}
		rctx := ctx
		if v == viewPage {
			rctx = operatorCtx(ctx)
		}
		ps := make([]piece, 0, len(job.parts))
		for _, p := range job.parts {
			var buf bytes.Buffer
			h.renderTo(rctx, &buf, p.comp)
			ps = append(ps, piece{to: p.to, bytes: buf.Bytes()})
		}
		pieces[v] = ps
	}
	if needPage[viewPage] || needPage[viewPageRO] {
		job.pages = map[string][]byte{}
		for _, c := range job.clients {
			if c.view != viewPage && c.view != viewPageRO {
				continue
			}
			key := pageKey(c)
			if _, ok := job.pages[key]; ok {
				continue
			}
			if cache != nil && cache.ok {
				if f, ok := cache.pages[key]; ok {
					job.pages[key] = f
					continue
				}
			}
			f := compose(pieces[c.view], c.topics)
			job.pages[key] = f
			if cache != nil {
				cache.pages[key] = f
			}
		}
	}
	if needWall {
		var wall []piece
		if cache != nil && cache.ok && cache.wall != nil {
			wall = cache.wall
		} else {
			for _, p := range job.wall {
				var buf bytes.Buffer
				h.renderTo(ctx, &buf, p.comp)
				wall = append(wall, piece{to: p.to, bytes: buf.Bytes(), stamp: p.stamp})
			}
		}
		job.walls = map[string][]byte{}
		for _, c := range job.clients {
			if _, ok := job.walls[c.topics.key]; c.view == viewWall && !ok {
				job.walls[c.topics.key] = compose(wall, c.topics)
			}
		}
		if cache != nil {
			cache.wall = wall
		}
	}
	if cache != nil {
		// A snapshot's one client has one view: its role's pieces.
		cache.pieces, cache.ok = pieces[job.clients[0].view], true
	}
}

// deliver hands a rendered job's frames to its clients still connected.
func (h *Hub) deliver(st *hubState, job *renderJob) {
	for _, c := range job.clients {
		if _, ok := st.clients[c]; !ok {
			continue
		}
		switch c.view {
		case viewPage, viewPageRO:
			f := job.pages[pageKey(c)]
			st.stats.BytesPerPage = max(st.stats.BytesPerPage, len(f))
			h.sendTo(st, c, f)
		case viewWall:
			h.sendTo(st, c, job.walls[c.topics.key])
		case viewJSON:
			h.sendTo(st, c, job.json[c.topics.key])
		}
	}
}

// pageKey names the frame a page client gets: its role's rendering of its
// topics.
func pageKey(c *client) string {
	if c.view == viewPageRO {
		return "ro|" + c.topics.key
	}
	return "op|" + c.topics.key
}
