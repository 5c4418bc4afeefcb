package outbox

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/nats-io/nats.go"
)

// IsUnreachable reports whether err says a broker could not be reached at
// all: refused, reset, timed out, no route, a name not found, no server.
// That is an outage, which ends by itself: a program may start without the
// broker (OpenAMQP, OpenRedisStreams, OpenJetStream) and let its messages
// wait. A refused login or a malformed URL is not: it needs a person.
func IsUnreachable(err error) bool {
	if err == nil {
		return false
	}
	var op *net.OpError
	var dns *net.DNSError
	var ne net.Error
	return errors.As(err, &op) || errors.As(err, &dns) ||
		(errors.As(err, &ne) && ne.Timeout()) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoServers)
}
