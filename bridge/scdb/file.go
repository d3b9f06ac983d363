package scdb

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"go.mau.fi/util/dbutil"
)

// FileQuery is the queries on sikkerchat_file (a file's header: size and
// number of chunks) and sikkerchat_file_chunk (its sealed chunks).
type FileQuery struct {
	db *dbutil.Database
}

// FileHeader is a stored file's header. Chunks is -1 while an upload is
// still coming in, and 0 for a file of schema v8 or before, whose whole
// contents are in Legacy.
type FileHeader struct {
	Chunks int
	Size   int64
	Legacy []byte
}

const (
	insertFileHeaderQuery = `INSERT INTO sikkerchat_file (conversation_id, file_id, created_at, sealed, chunks, size) VALUES ($1, $2, $3, '', -1, 0)`
	finishFileQuery       = `UPDATE sikkerchat_file SET chunks=$3, size=$4 WHERE conversation_id=$1 AND file_id=$2`
	insertFileChunkQuery  = `INSERT INTO sikkerchat_file_chunk (conversation_id, file_id, idx, sealed) VALUES ($1, $2, $3, $4)`
	getFileHeaderQuery    = `SELECT chunks, size, sealed FROM sikkerchat_file WHERE conversation_id=$1 AND file_id=$2`
	getFileChunkQuery     = `SELECT sealed FROM sikkerchat_file_chunk WHERE conversation_id=$1 AND file_id=$2 AND idx=$3`
	// The chunks go with their file (foreign key).
	deleteFileQuery            = `DELETE FROM sikkerchat_file WHERE conversation_id=$1 AND file_id=$2`
	deleteUnfinishedFilesQuery = `DELETE FROM sikkerchat_file WHERE chunks < 0`
	shredFilesQuery            = `DELETE FROM sikkerchat_file WHERE conversation_id=$1`
)

// Begin stores the header of a file whose chunks are about to come.
func (fq *FileQuery) Begin(ctx context.Context, conversationID, fileID string, now time.Time) error {
	_, err := fq.db.Exec(ctx, insertFileHeaderQuery, conversationID, fileID, now.UnixMilli())
	return err
}

// PutChunk stores one sealed chunk.
func (fq *FileQuery) PutChunk(ctx context.Context, conversationID, fileID string, idx int, sealed []byte) error {
	_, err := fq.db.Exec(ctx, insertFileChunkQuery, conversationID, fileID, idx, sealed)
	return err
}

// Finish records a file's size and number of chunks: it is complete.
func (fq *FileQuery) Finish(ctx context.Context, conversationID, fileID string, chunks int, size int64) error {
	_, err := fq.db.Exec(ctx, finishFileQuery, conversationID, fileID, chunks, size)
	return err
}

// Header returns a complete file's header; nil if there is no such file (or
// its upload has not finished).
func (fq *FileQuery) Header(ctx context.Context, conversationID, fileID string) (*FileHeader, error) {
	var h FileHeader
	err := fq.db.QueryRow(ctx, getFileHeaderQuery, conversationID, fileID).Scan(&h.Chunks, &h.Size, &h.Legacy)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && h.Chunks < 0) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	return &h, nil
}

// Chunk returns one sealed chunk.
func (fq *FileQuery) Chunk(ctx context.Context, conversationID, fileID string, idx int) (sealed []byte, err error) {
	err = fq.db.QueryRow(ctx, getFileChunkQuery, conversationID, fileID, idx).Scan(&sealed)
	return
}

// Delete removes a file with its chunks.
func (fq *FileQuery) Delete(ctx context.Context, conversationID, fileID string) error {
	_, err := fq.db.Exec(ctx, deleteFileQuery, conversationID, fileID)
	return err
}

// DeleteUnfinished removes uploads a stop of the bridge cut off.
func (fq *FileQuery) DeleteUnfinished(ctx context.Context) error {
	_, err := fq.db.Exec(ctx, deleteUnfinishedFilesQuery)
	return err
}

// Shred deletes every file of a conversation.
func (fq *FileQuery) Shred(ctx context.Context, conversationID string) error {
	_, err := fq.db.Exec(ctx, shredFilesQuery, conversationID)
	return err
}
