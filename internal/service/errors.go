package service

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/dcounter/dcounter/internal/auth"
	"github.com/dcounter/dcounter/internal/crdt"
)

// Errors of the service itself. A front end's own request errors (a bad
// body, a bad argument) are made with Invalid, so that they fall in the
// same table.
var (
	// ErrNotFound: the key is not live (absent, deleted or expired).
	ErrNotFound = errors.New("not found")
	// ErrIdempotencyReused: an idempotency key came back with a different
	// request than the one it was first used for.
	ErrIdempotencyReused = errors.New("this idempotency key was already used for a different request")
	// ErrBadIdempotency: the idempotency key is too long or not printable.
	ErrBadIdempotency = Invalid(errors.New("an idempotency key must be 1-255 printable ASCII characters"))
)

// Class is what kind of failure an error is: the one thing front ends
// look at to answer it.
type Class uint8

// The classes, each answered by one HTTP status and one RESP error prefix
// (classes).
const (
	ClassInternal        Class = iota // the outcome of a write may be unknown
	ClassInvalid                      // the request is wrong; nothing changed
	ClassNotFound                     // the key (or route) is not there
	ClassUnauthenticated              // no valid credentials
	ClassForbidden                    // the credentials' role falls short
	ClassConflict                     // an idempotency key reused for another request
	ClassTooLarge                     // a request beyond a size limit
	ClassMethod                       // a method the route does not answer (HTTP only)
	ClassUnavailable                  // refused for now, nothing changed: retry later
)

// classes is the one table from error classes to what each front end
// answers: the HTTP status, and the RESP error's first word (the code
// Redis clients switch on; go-redis retries TRYAGAIN, for example).
var classes = [...]struct {
	http int
	resp string
}{
	ClassInternal:        {http.StatusInternalServerError, "ERR"},
	ClassInvalid:         {http.StatusBadRequest, "ERR"},
	ClassNotFound:        {http.StatusNotFound, "ERR"},
	ClassUnauthenticated: {http.StatusUnauthorized, "NOAUTH"},
	ClassForbidden:       {http.StatusForbidden, "NOPERM"},
	ClassConflict:        {http.StatusUnprocessableEntity, "ERR"},
	ClassTooLarge:        {http.StatusRequestEntityTooLarge, "ERR"},
	ClassMethod:          {http.StatusMethodNotAllowed, "ERR"},
	ClassUnavailable:     {http.StatusServiceUnavailable, "TRYAGAIN"},
}

// ClassOf returns err's class (ClassInternal for nil or unknown errors:
// a caller asks only about failures).
func ClassOf(err error) Class {
	var c classified
	switch {
	case errors.As(err, &c):
		return c.class
	case errors.Is(err, auth.ErrUnauthenticated):
		return ClassUnauthenticated
	case errors.Is(err, auth.ErrForbidden):
		return ClassForbidden
	case errors.Is(err, ErrNotFound):
		return ClassNotFound
	case errors.Is(err, ErrIdempotencyReused):
		return ClassConflict
	case errors.Is(err, crdt.ErrBadKey), errors.Is(err, crdt.ErrOverflow), errors.Is(err, crdt.ErrBadAmount):
		return ClassInvalid
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return ClassUnavailable
	}
	return ClassInternal
}

// HTTPStatus is the status an HTTP front end answers err with.
func HTTPStatus(err error) int { return classes[ClassOf(err)].http }

// RESPError is the error line (without "-" and CRLF) a Redis-protocol
// front end answers err with: the class's code, then Message.
func RESPError(err error) string {
	msg := Message(err)
	// One line: a RESP error cannot hold a line break.
	msg = strings.NewReplacer("\r", " ", "\n", " ").Replace(msg)
	return classes[ClassOf(err)].resp + " " + msg
}

// Message is what a client reads for err: the text without package
// prefixes, which are for logs, and in the words Redis uses where it has
// them.
func Message(err error) string {
	switch {
	case errors.Is(err, crdt.ErrOverflow):
		return "increment or decrement would overflow"
	case errors.Is(err, crdt.ErrBadKey):
		return "key must be 1-512 bytes of valid UTF-8"
	}
	return strings.TrimPrefix(err.Error(), "auth: ")
}

// Invalid marks err as a bad request (ClassInvalid); its message is err's.
func Invalid(err error) error { return classified{err, ClassInvalid} }

// Unavailable marks err as a temporary refusal that changed nothing
// (ClassUnavailable); its message is err's.
func Unavailable(err error) error { return classified{err, ClassUnavailable} }

// WithClass marks err as being of class c; its message is err's.
func WithClass(err error, c Class) error { return classified{err, c} }

type classified struct {
	err   error
	class Class
}

func (e classified) Error() string { return e.err.Error() }
func (e classified) Unwrap() error { return e.err }
