package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/require"
)

// A file is kept in whole chunks and a short last one, whatever its size
// and however the upload's bytes trickle in: around every chunk boundary
// the bytes, the size and the hash come back exactly.
func TestFilesOfEverySizeAroundTheChunkBoundaries(t *testing.T) {
	sc, _, conv := gstConnector(t)
	ctx := context.Background()
	for _, size := range []int{1, 511, 512, fileChunkSize - 1, fileChunkSize, fileChunkSize + 1, 2 * fileChunkSize, 2*fileChunkSize + 7} {
		data := make([]byte, size)
		_, err := rand.Read(data)
		require.NoError(t, err)
		wantChunks := (size + fileChunkSize - 1) / fileChunkSize
		sum := sha256.Sum256(data)
		for name, r := range map[string]io.Reader{
			"whole":                 bytes.NewReader(data),
			"a byte at a time":      iotest.OneByteReader(bytes.NewReader(data)),
			"the end with the data": iotest.DataErrReader(bytes.NewReader(data)),
			"half reads":            iotest.HalfReader(bytes.NewReader(data)),
		} {
			fileID := "f" + randomID(8)
			stored, err := sc.Transcript.storeFileStream(ctx, conv.ID, fileID, r, int64(size), nil)
			require.NoError(t, err, "%d bytes, %s", size, name)
			require.EqualValues(t, size, stored.size)
			require.Equal(t, hex.EncodeToString(sum[:]), stored.sha256)
			h, err := sc.DB.File.Header(ctx, conv.ID, fileID)
			require.NoError(t, err)
			require.Equal(t, wantChunks, h.Chunks, "%d bytes, %s", size, name)
			require.EqualValues(t, size, h.Size)
			got, err := sc.Transcript.File(ctx, conv.ID, fileID)
			require.NoError(t, err)
			require.True(t, bytes.Equal(data, got), "%d bytes, %s", size, name)
			n, err := sc.Transcript.FileSize(ctx, conv.ID, fileID)
			require.NoError(t, err)
			require.EqualValues(t, size, n)
		}
	}
}

// The size limit is exact: a file of the limit is kept, one byte more is
// refused and leaves no header and no chunk behind.
func TestFileLimitIsExactAndARefusalLeavesNothing(t *testing.T) {
	sc, _, conv := gstConnector(t)
	ctx := context.Background()
	data := bytes.Repeat([]byte("x"), fileChunkSize+100)
	_, err := sc.Transcript.storeFileStream(ctx, conv.ID, "exact", bytes.NewReader(data), int64(len(data)), nil)
	require.NoError(t, err)
	for _, limit := range []int64{int64(len(data)) - 1, fileChunkSize, 10} {
		_, err = sc.Transcript.storeFileStream(ctx, conv.ID, "over", bytes.NewReader(data), limit, nil)
		require.ErrorIs(t, err, ErrFileTooLarge, "limit %d", limit)
	}
	var files, chunks int
	require.NoError(t, sc.DB.QueryRow(ctx, `SELECT COUNT(*) FROM sikkerchat_file WHERE file_id='over'`).Scan(&files))
	require.NoError(t, sc.DB.QueryRow(ctx, `SELECT COUNT(*) FROM sikkerchat_file_chunk WHERE file_id='over'`).Scan(&chunks))
	require.Zero(t, files+chunks)
}

// The type check sees the file's first bytes (at most 512) before anything
// is stored; a file it refuses is never written at all.
func TestTypeCheckSeesTheHeadBeforeAnythingIsStored(t *testing.T) {
	sc, _, conv := gstConnector(t)
	ctx := context.Background()
	var seen []int
	refuse := errors.New("refused")
	check := func(head []byte) error {
		seen = append(seen, len(head))
		var files int
		require.NoError(t, sc.DB.QueryRow(ctx, `SELECT COUNT(*) FROM sikkerchat_file`).Scan(&files))
		require.Zero(t, files, "nothing stored before the check")
		return refuse
	}
	for _, size := range []int{100, 3 * fileChunkSize} {
		_, err := sc.Transcript.storeFileStream(ctx, conv.ID, "checked", iotest.OneByteReader(bytes.NewReader(make([]byte, size))), 1<<30, check)
		require.ErrorIs(t, err, refuse)
	}
	require.Equal(t, []int{100, 512}, seen)
}

// Reading a stored file: a missing or half-uploaded one is "not found", a
// reader that stops early stops the stream with its own error, and the
// upload's read errors name what broke.
func TestReadingStoredFilesAndUploadErrors(t *testing.T) {
	sc, _, conv := gstConnector(t)
	ctx := context.Background()
	_, err := sc.Transcript.File(ctx, conv.ID, "never-stored")
	require.ErrorIs(t, err, ErrFileNotFound)
	_, err = sc.Transcript.FileSize(ctx, conv.ID, "never-stored")
	require.ErrorIs(t, err, ErrFileNotFound)
	require.NoError(t, sc.DB.File.Begin(ctx, conv.ID, "half", time.Now()))
	_, err = sc.Transcript.File(ctx, conv.ID, "half")
	require.ErrorIs(t, err, ErrFileNotFound, "an upload still coming in is not a file yet")

	require.NoError(t, sc.Transcript.storeFile(ctx, conv.ID, "three", make([]byte, 3*fileChunkSize)))
	stop := errors.New("the guest went away")
	calls := 0
	err = sc.Transcript.StreamFile(ctx, conv.ID, "three", func([]byte) error { calls++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, calls, "nothing more is read for a reader that left")

	cause := io.ErrUnexpectedEOF
	_, err = sc.Transcript.storeFileStream(ctx, conv.ID, "cut", iotest.TimeoutReader(bytes.NewReader(make([]byte, 2*fileChunkSize))), 1<<30, nil)
	var readErr *UploadReadError
	require.ErrorAs(t, err, &readErr)
	require.ErrorIs(t, err, iotest.ErrTimeout)
	require.Contains(t, err.Error(), "failed to read the upload")
	wrapped := &UploadReadError{Err: cause}
	require.ErrorIs(t, wrapped, io.ErrUnexpectedEOF)
	require.Equal(t, "failed to read the upload: unexpected EOF", wrapped.Error())
}

// Files stored before chunking (schema v8: the whole file sealed in the
// header row) still open, and only under their own conversation and ID.
func TestFilesFromBeforeChunkingStillOpen(t *testing.T) {
	sc, _, conv := gstConnector(t)
	ctx := context.Background()
	key, err := sc.Transcript.conversationKey(ctx, conv.ID)
	require.NoError(t, err)
	data := []byte("en gammel fil, lagret i ett stykke")
	put := func(fileID string, sealedFor string) {
		sealed, err := seal(key, data, fileAAD(conv.ID, sealedFor))
		require.NoError(t, err)
		_, err = sc.DB.Exec(ctx, `INSERT INTO sikkerchat_file (conversation_id, file_id, created_at, sealed, chunks, size) VALUES ($1, $2, 1, $3, 0, 0)`,
			conv.ID, fileID, sealed)
		require.NoError(t, err)
	}
	put("legacy", "legacy")
	got, err := sc.Transcript.File(ctx, conv.ID, "legacy")
	require.NoError(t, err)
	require.Equal(t, data, got)
	size, err := sc.Transcript.FileSize(ctx, conv.ID, "legacy")
	require.NoError(t, err)
	require.EqualValues(t, len(data), size)

	put("moved", "legacy") // another file's sealed bytes under this ID
	_, err = sc.Transcript.File(ctx, conv.ID, "moved")
	require.Error(t, err)
	_, err = sc.Transcript.FileSize(ctx, conv.ID, "moved")
	require.Error(t, err)
}
