package jsonbody

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

type body struct {
	Name  string `json:"name"`
	Count *int   `json:"count"`
}

func read(t *testing.T, raw string, opts Options) (body, error) {
	t.Helper()
	var b body
	req := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(raw))
	err := Read(httptest.NewRecorder(), req, &b, opts)
	return b, err
}

func TestReadIsStrict(t *testing.T) {
	opts := Options{MaxBytes: 1024}
	b, err := read(t, `{"name":"Kari","count":2}`, opts)
	require.NoError(t, err)
	require.Equal(t, "Kari", b.Name)
	require.Equal(t, 2, *b.Count)
	for _, bad := range []string{
		``, ` `, `{`, `[]`, `"x"`, `{"name":"a"}{}`, `{"name":"a"} x`, `{"name":5}`, `{"other":1}`,
		"{\"name\":\"bl\xe5\"}", "{\"name\":\"a\x00b\"}", `{"count":1.5}`,
	} {
		_, err := read(t, bad, opts)
		require.ErrorIs(t, err, ErrMalformed, "%q", bad)
	}
	_, err = read(t, `null`, opts)
	require.NoError(t, err, "null is a value: the caller checks its fields")
	_, err = read(t, `{"name":"`+strings.Repeat("a", 2000)+`"}`, opts)
	require.ErrorIs(t, err, ErrTooLarge)
}

func TestReadOptions(t *testing.T) {
	_, err := read(t, "  \n", Options{MaxBytes: 100, AllowEmpty: true})
	require.NoError(t, err, "an empty body is no fields")
	for _, notObject := range []string{`null`, `[]`, `5`, `"x"`} {
		_, err = read(t, notObject, Options{MaxBytes: 100, ObjectOnly: true})
		require.ErrorIs(t, err, ErrMalformed, notObject)
	}
	_, err = read(t, ` {"name":"a"} `, Options{MaxBytes: 100, ObjectOnly: true})
	require.NoError(t, err)
}

// A body whose connection's read deadline passed is not "malformed": the
// client gets to know it was too slow, not that it sent bad JSON.
func TestReadTimeout(t *testing.T) {
	req := httptest.NewRequest(http.MethodPost, "/", io.MultiReader(strings.NewReader(`{"name":"Ka`), deadlineReader{}))
	var b body
	require.ErrorIs(t, Read(httptest.NewRecorder(), req, &b, Options{MaxBytes: 1024}), ErrTimeout)
}

type deadlineReader struct{}

func (deadlineReader) Read([]byte) (int, error) {
	return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
}

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusCreated, map[string]string{"status": "ok"})
	require.Equal(t, http.StatusCreated, rec.Code)
	require.Equal(t, "application/json; charset=utf-8", rec.Header().Get("Content-Type"))
	require.JSONEq(t, `{"status":"ok"}`, rec.Body.String())
}
