// Package jsonbody reads and writes the small JSON bodies of sikkerchat's
// HTTP APIs (the guest API and the provisioning API), strictly: unknown
// fields, trailing data, wrong types and bytes that are not UTF-8 are errors.
// (encoding/json would quietly turn invalid UTF-8 into U+FFFD: what people
// wrote must arrive as written, or not at all.)
package jsonbody

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"unicode/utf8"
)

var (
	// ErrTooLarge: the body is over the limit.
	ErrTooLarge = errors.New("request body too large")
	// ErrMalformed: the body is not JSON of the expected shape.
	ErrMalformed = errors.New("request body is not JSON of the expected shape")
	// ErrTimeout: the body did not arrive before the connection's read deadline.
	ErrTimeout = errors.New("request body did not arrive in time")
)

// Options say what a body may be besides a JSON value of v's shape.
type Options struct {
	MaxBytes int64
	// AllowEmpty accepts an empty (or all-whitespace) body as "no fields".
	AllowEmpty bool
	// ObjectOnly refuses anything but an object (null, arrays, numbers…).
	ObjectOnly bool
}

// Read decodes the request body into v.
func Read(w http.ResponseWriter, r *http.Request, v any, opts Options) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, opts.MaxBytes))
	var maxErr *http.MaxBytesError
	if errors.As(err, &maxErr) {
		return ErrTooLarge
	} else if errors.Is(err, os.ErrDeadlineExceeded) {
		return ErrTimeout
	} else if err != nil {
		return ErrMalformed
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 && opts.AllowEmpty {
		return nil
	}
	if !utf8.Valid(body) || (opts.ObjectOnly && (len(trimmed) == 0 || trimmed[0] != '{')) {
		return ErrMalformed
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err = dec.Decode(v); err != nil {
		return ErrMalformed
	}
	if _, extra := dec.Token(); extra != io.EOF {
		return ErrMalformed // trailing data
	}
	return nil
}

// Write sends v as JSON with the status.
func Write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
