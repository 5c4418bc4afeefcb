package clusterevents

import (
	"bytes"
	"encoding/json"

	"github.com/canalhq/canal/jobs"
	"github.com/canalhq/canal/outbox"
)

// envelope is one payload: a process's events, oldest first per kind.
type envelope struct {
	Process string            `json:"p"`
	Jobs    []json.RawMessage `json:"j,omitempty"`
	Outbox  []json.RawMessage `json:"o,omitempty"`
}

// maxError bounds an error text carried between processes: the pages read
// the whole of it from the database.
const maxError = 300

func trim(s string) string {
	if len(s) <= maxError {
		return s
	}
	cut := maxError
	for cut > 0 && s[cut]&0xC0 == 0x80 { // not in the middle of a UTF-8 rune
		cut--
	}
	return s[:cut] + "…"
}

// encodeJob encodes ev for the carrier: without payloads, with errors
// trimmed, and a snapshot split into parts that fit room bytes (a hub
// merges another process's snapshot into what it knows).
func encodeJob(ev jobs.Event, room int) [][]byte {
	ev.Dropped, ev.Origin = 0, ""
	if ev.Job != nil {
		s := *ev.Job
		s.LastError, s.Message = trim(s.LastError), trim(s.Message)
		ev.Job = &s
	}
	if ev.Work != nil {
		w := *ev.Work
		w.Payload, w.LastError = nil, trim(w.LastError)
		ev.Work = &w
	}
	if ev.Type != jobs.EventSnapshot || len(ev.Jobs) == 0 {
		b, err := json.Marshal(ev)
		if err != nil {
			return nil
		}
		return [][]byte{b}
	}
	var out [][]byte
	var cur []jobs.Status
	var enc []byte
	part := ev
	for _, st := range trimJobs(ev.Jobs) {
		part.Jobs = append(cur, st)
		b, err := json.Marshal(part)
		if err != nil {
			return out
		}
		if len(b) > room && len(cur) > 0 {
			// Full: send what fitted, start the next part with st.
			out = append(out, enc)
			part.Queue = nil // once is enough
			part.Jobs = []jobs.Status{st}
			if b, err = json.Marshal(part); err != nil {
				return out
			}
		}
		cur, enc = part.Jobs, b
	}
	return append(out, enc)
}

func trimJobs(js []jobs.Status) []jobs.Status {
	out := make([]jobs.Status, len(js))
	for i, s := range js {
		s.LastError, s.Message = trim(s.LastError), trim(s.Message)
		out[i] = s
	}
	return out
}

// encodeOutbox encodes ev for the carrier, or returns nil for an event the
// other processes do not need: the stats snapshot counts the shared table,
// which every process counts for itself.
func encodeOutbox(ev outbox.Event) []byte {
	if ev.Type == outbox.EventStats {
		return nil
	}
	ev.Origin, ev.Stats = "", nil
	if ev.Message != nil {
		m := *ev.Message
		m.LastError = trim(m.LastError)
		ev.Message = &m
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil
	}
	return b
}

// batch gathers encoded events into one envelope of at most max bytes.
type batch struct {
	process string
	max     int
	jobs    [][]byte
	outbox  [][]byte
	size    int // the envelope's size with what it holds
}

// overhead is an envelope's size with no event: {"p":"…","j":[],"o":[]}.
func (b *batch) overhead() int {
	p, _ := json.Marshal(b.process)
	return len(`{"p":,"j":[],"o":[]}`) + len(p)
}

func (b *batch) empty() bool { return len(b.jobs)+len(b.outbox) == 0 }

// room is the most an event may take in an empty envelope.
func (b *batch) room() int { return b.max - b.overhead() - 1 }

func (b *batch) fits(raw []byte) bool {
	if b.size == 0 {
		b.size = b.overhead()
	}
	return b.size+len(raw)+1 <= b.max
}

// add adds raw ('j' a job event, 'o' an outbox event) if it fits; false
// means it does not fit even alone.
func (b *batch) add(kind byte, raw []byte) bool {
	if !b.fits(raw) {
		return false
	}
	if kind == 'j' {
		b.jobs = append(b.jobs, raw)
	} else {
		b.outbox = append(b.outbox, raw)
	}
	b.size += len(raw) + 1
	return true
}

// take returns the envelope and how many events it holds, and empties
// the batch.
func (b *batch) take() ([]byte, int) {
	var buf bytes.Buffer
	p, _ := json.Marshal(b.process)
	buf.WriteString(`{"p":`)
	buf.Write(p)
	write := func(name string, xs [][]byte) {
		if len(xs) == 0 {
			return
		}
		buf.WriteString(`,"` + name + `":[`)
		for i, x := range xs {
			if i > 0 {
				buf.WriteByte(',')
			}
			buf.Write(x)
		}
		buf.WriteByte(']')
	}
	write("j", b.jobs)
	write("o", b.outbox)
	buf.WriteByte('}')
	n := len(b.jobs) + len(b.outbox)
	b.jobs, b.outbox, b.size = b.jobs[:0:0], b.outbox[:0:0], 0
	return buf.Bytes(), n
}
