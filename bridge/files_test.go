package bridge_test

import (
	"bytes"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// A file is stored in sealed chunks; a copy of the database in which chunks
// were swapped, moved between files, cut off or changed gives nothing back.
func TestFileChunksCannotBeReorderedCutOrSwapped(t *testing.T) {
	tb := newTestBridge(t, newTestConfig(t))
	inv := tb.newInvite(time.Hour)
	data := make([]byte, 200_000) // four chunks
	_, err := rand.Read(data)
	require.NoError(t, err)
	a, err := tb.Officers.StoreFile(tb.ctx, inv.conv.ID, "a.bin", data)
	require.NoError(t, err)
	got, err := tb.Transcript.File(tb.ctx, inv.conv.ID, a.ID)
	require.NoError(t, err)
	require.True(t, bytes.Equal(data, got))
	size, err := tb.Transcript.FileSize(tb.ctx, inv.conv.ID, a.ID)
	require.NoError(t, err)
	require.Equal(t, int64(len(data)), size)
	var chunks int
	require.NoError(t, tb.DB.QueryRow(tb.ctx, `SELECT COUNT(*) FROM sikkerchat_file_chunk WHERE file_id=$1`, a.ID).Scan(&chunks))
	require.Equal(t, 4, chunks)

	for _, tamper := range []struct {
		name    string
		queries []string
	}{
		{"swapped chunks", []string{
			`UPDATE sikkerchat_file_chunk SET idx=100 WHERE file_id=$1 AND idx=1`,
			`UPDATE sikkerchat_file_chunk SET idx=1 WHERE file_id=$1 AND idx=2`,
			`UPDATE sikkerchat_file_chunk SET idx=2 WHERE file_id=$1 AND idx=100`,
		}},
		{"a chunk of another file", []string{
			`UPDATE sikkerchat_file_chunk SET sealed=(SELECT sealed FROM sikkerchat_file_chunk WHERE file_id=$2 AND idx=1) WHERE file_id=$1 AND idx=1`,
		}},
		{"cut off after three chunks", []string{`UPDATE sikkerchat_file SET chunks=3 WHERE file_id=$1 AND $2<>''`}},
		{"last chunk dropped", []string{`DELETE FROM sikkerchat_file_chunk WHERE file_id=$1 AND idx=3 AND $2<>''`}},
	} {
		t.Run(tamper.name, func(t *testing.T) {
			tb := newTestBridge(t, newTestConfig(t))
			inv := tb.newInvite(time.Hour)
			a, err := tb.Officers.StoreFile(tb.ctx, inv.conv.ID, "a.bin", data)
			require.NoError(t, err)
			b, err := tb.Officers.StoreFile(tb.ctx, inv.conv.ID, "b.bin", data)
			require.NoError(t, err)
			for _, q := range tamper.queries {
				if !strings.Contains(q, "$2") {
					_, err = tb.DB.Exec(tb.ctx, q, a.ID)
				} else {
					_, err = tb.DB.Exec(tb.ctx, q, a.ID, b.ID)
				}
				require.NoError(t, err)
			}
			_, err = tb.Transcript.File(tb.ctx, inv.conv.ID, a.ID)
			require.Error(t, err)
		})
	}
}

// An upload that breaks off, or turns out too large, leaves nothing stored.
func TestBrokenUploadsLeaveNothing(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.Guest.MaxFileBytes = 100_000
	tb := newTestBridge(t, cfg)
	inv := tb.newInvite(time.Hour)
	png := append([]byte("\x89PNG\r\n\x1a\n"), make([]byte, 150_000)...)
	_, err := tb.Guests.StoreFile(tb.ctx, inv.conv, "stor.png", "image/png", bytes.NewReader(png))
	require.ErrorIs(t, err, bridge.ErrFileTooLarge)
	_, err = tb.Guests.StoreFile(tb.ctx, inv.conv, "avbrutt.png", "image/png", &failingReader{data: png[:70_000]})
	var readErr *bridge.UploadReadError
	require.ErrorAs(t, err, &readErr)
	var n int
	require.NoError(t, tb.DB.QueryRow(tb.ctx, `SELECT (SELECT COUNT(*) FROM sikkerchat_file) + (SELECT COUNT(*) FROM sikkerchat_file_chunk)`).Scan(&n))
	require.Zero(t, n)
}

// failingReader gives its bytes, then the error of a connection that broke.
type failingReader struct{ data []byte }

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, errConnectionReset
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

var errConnectionReset = bytes.ErrTooLarge // any error that is not io.EOF
