package bridge

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"time"

	"github.com/rs/zerolog"
)

var (
	ErrFileTooLarge    = errors.New("file too large")
	ErrFileTypeRefused = errors.New("file type not allowed")
	ErrFileTypeClaim   = errors.New("file contents do not match the claimed type")
	ErrFileNotFound    = errors.New("file not found")
	ErrFileEmpty       = errors.New("file is empty")
)

// UploadReadError is a file's bytes that could not be read to the end: the
// sender went away, stalled or sent a broken body. Nothing was stored.
type UploadReadError struct{ Err error }

func (e *UploadReadError) Error() string { return "failed to read the upload: " + e.Err.Error() }
func (e *UploadReadError) Unwrap() error { return e.Err }

// Files are kept in chunks of fileChunkSize, each sealed on its own, so that
// an upload is sealed and stored as it arrives and a download is opened and
// sent a chunk at a time: neither holds a whole file (let alone two copies
// of it) in memory, however many guests send or fetch at once.
const fileChunkSize = 64 << 10

// FileInfo is what the page and the room learn about a file.
type FileInfo struct {
	ID     string
	Name   string
	Mime   string
	Size   int
	SHA256 string
}

// Extras is how a file is described inside a sealed transcript entry.
func (f FileInfo) Extras() EntryExtras {
	return EntryExtras{"file_id": f.ID, "name": f.Name, "mime": f.Mime, "size": strconv.Itoa(f.Size), "sha256": f.SHA256}
}

// FileInfoOf reads the file facts of a transcript entry of kind "file".
func FileInfoOf(e *TranscriptEntry) (FileInfo, bool) {
	if e.Kind != "file" || e.Extra["file_id"] == "" {
		return FileInfo{}, false
	}
	size, _ := strconv.Atoi(e.Extra["size"])
	return FileInfo{ID: e.Extra["file_id"], Name: e.Extra["name"], Mime: e.Extra["mime"], Size: size, SHA256: e.Extra["sha256"]}, true
}

func fileAAD(conversationID, fileID string) []byte {
	return []byte("file:" + conversationID + "/" + fileID)
}

// chunkAAD binds a chunk to its file, its place and whether it ends the
// file: chunks cannot be reordered, swapped between files or cut off.
func chunkAAD(conversationID, fileID string, idx int, last bool) []byte {
	end := "more"
	if last {
		end = "end"
	}
	return []byte("file:" + conversationID + "/" + fileID + "/" + strconv.Itoa(idx) + "/" + end)
}

// storedFile is what storing a file's bytes learned about them.
type storedFile struct {
	id     string
	mime   string
	size   int64
	sha256 string
}

// storeFileStream seals and stores a file as it is read, a chunk at a time.
// The first chunk is shown to check before anything is stored (the type
// check); at most limit bytes are taken. On any error nothing of the file is
// left behind.
func (t *Transcript) storeFileStream(ctx context.Context, conversationID, fileID string, r io.Reader, limit int64,
	check func(head []byte) error) (*storedFile, error) {
	key, err := t.conversationKey(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	sum := sha256.New()
	cur := make([]byte, fileChunkSize)
	n, _, err := readChunk(r, cur)
	if err != nil {
		return nil, err
	}
	cur = cur[:n]
	if n == 0 {
		return nil, ErrFileEmpty
	}
	if check != nil {
		if err = check(cur[:min(n, 512)]); err != nil {
			return nil, err
		}
	}
	if err = t.db.File.Begin(ctx, conversationID, fileID, time.Now()); err != nil {
		return nil, fmt.Errorf("failed to store file: %w", err)
	}
	stored, err := t.writeChunks(ctx, key, conversationID, fileID, cur, r, limit, sum)
	if err != nil {
		// Not under ctx: a guest who went away must not leave half a file.
		if delErr := t.db.File.Delete(context.WithoutCancel(ctx), conversationID, fileID); delErr != nil {
			zerolog.Ctx(ctx).Err(delErr).Msg("Failed to drop an unfinished file")
		}
		return nil, err
	}
	return stored, nil
}

func (t *Transcript) writeChunks(ctx context.Context, key []byte, conversationID, fileID string, first []byte, r io.Reader, limit int64, sum hash.Hash) (*storedFile, error) {
	head := bytes.Clone(first[:min(len(first), 512)])
	cur, next := first, make([]byte, fileChunkSize)
	total := int64(len(cur))
	ended := len(first) < fileChunkSize // the first read already met the end
	for idx := 0; ; idx++ {
		// Read one chunk ahead: a chunk is sealed as the last one only when
		// nothing follows it.
		n := 0
		if !ended {
			var err error
			if n, ended, err = readChunk(r, next); err != nil {
				return nil, err
			}
		}
		if total+int64(n) > limit {
			return nil, ErrFileTooLarge
		}
		last := n == 0
		sum.Write(cur)
		sealed, err := seal(key, cur, chunkAAD(conversationID, fileID, idx, last))
		if err != nil {
			return nil, err
		}
		if err = t.db.File.PutChunk(ctx, conversationID, fileID, idx, sealed); err != nil {
			return nil, fmt.Errorf("failed to store file chunk: %w", err)
		}
		if last {
			if err = t.db.File.Finish(ctx, conversationID, fileID, idx+1, total); err != nil {
				return nil, fmt.Errorf("failed to store file: %w", err)
			}
			return &storedFile{id: fileID, mime: DetectFileType(head), size: total, sha256: hex.EncodeToString(sum.Sum(nil))}, nil
		}
		cur, next = next[:n], cur[:cap(cur)]
		total += int64(n)
	}
}

// readChunk fills buf from r. Only a clean end of the stream (io.EOF) ends
// the file; any other error, io.ErrUnexpectedEOF of a body cut off
// included, is an UploadReadError.
func readChunk(r io.Reader, buf []byte) (n int, ended bool, err error) {
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err == io.EOF {
			return n, true, nil
		} else if err != nil {
			return n, false, &UploadReadError{err}
		}
	}
	return n, false, nil
}

// storeFile stores bytes already in memory (an officer's file).
func (t *Transcript) storeFile(ctx context.Context, conversationID, fileID string, data []byte) error {
	_, err := t.storeFileStream(ctx, conversationID, fileID, bytes.NewReader(data), int64(len(data)), nil)
	return err
}

// FileSize is the stored size of a file's contents.
func (t *Transcript) FileSize(ctx context.Context, conversationID, fileID string) (int64, error) {
	chunks, size, legacy, err := t.fileHeader(ctx, conversationID, fileID)
	if err != nil {
		return 0, err
	} else if chunks == 0 {
		data, err := t.openLegacyFile(ctx, conversationID, fileID, legacy)
		return int64(len(data)), err
	}
	return size, nil
}

func (t *Transcript) fileHeader(ctx context.Context, conversationID, fileID string) (chunks int, size int64, legacy []byte, err error) {
	h, err := t.db.File.Header(ctx, conversationID, fileID)
	if err != nil {
		return 0, 0, nil, fmt.Errorf("failed to read file: %w", err)
	} else if h == nil {
		return 0, 0, nil, ErrFileNotFound
	}
	return h.Chunks, h.Size, h.Legacy, nil
}

func (t *Transcript) openLegacyFile(ctx context.Context, conversationID, fileID string, sealed []byte) ([]byte, error) {
	key, err := t.conversationKey(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	return open(key, sealed, fileAAD(conversationID, fileID))
}

// StreamFile opens a stored file a chunk at a time and hands each chunk to
// fn as soon as it is open; every chunk is a query of its own, so a slow
// reader holds no database connection. A chunk that does not open (changed,
// swapped, the file cut short) ends the stream with an error.
func (t *Transcript) StreamFile(ctx context.Context, conversationID, fileID string, fn func(chunk []byte) error) error {
	chunks, _, legacy, err := t.fileHeader(ctx, conversationID, fileID)
	if err != nil {
		return err
	}
	if chunks == 0 {
		data, err := t.openLegacyFile(ctx, conversationID, fileID, legacy)
		if err != nil {
			return err
		}
		return fn(data)
	}
	key, err := t.conversationKey(ctx, conversationID)
	if err != nil {
		return err
	}
	for idx := range chunks {
		sealed, err := t.db.File.Chunk(ctx, conversationID, fileID, idx)
		if err != nil {
			return fmt.Errorf("failed to read file chunk %d: %w", idx, err)
		}
		chunk, err := open(key, sealed, chunkAAD(conversationID, fileID, idx, idx == chunks-1))
		if err != nil {
			return fmt.Errorf("failed to open file chunk %d: %w", idx, err)
		}
		if err = fn(chunk); err != nil {
			return err
		}
	}
	return nil
}

// File returns a stored file's bytes, opened (the outbox hands whole files
// to the homeserver).
func (t *Transcript) File(ctx context.Context, conversationID, fileID string) ([]byte, error) {
	var buf bytes.Buffer
	err := t.StreamFile(ctx, conversationID, fileID, func(chunk []byte) error {
		buf.Write(chunk)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
