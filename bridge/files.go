package bridge

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"
)

var (
	ErrFileTooLarge    = errors.New("file too large")
	ErrFileTypeRefused = errors.New("file type not allowed")
	ErrFileTypeClaim   = errors.New("file contents do not match the claimed type")
	ErrFileNotFound    = errors.New("file not found")
	ErrFileEmpty       = errors.New("file is empty")
)

const (
	insertFileQuery = `INSERT INTO sikkerchat_file (conversation_id, file_id, created_at, sealed) VALUES ($1, $2, $3, $4)`
	getFileQuery    = `SELECT sealed FROM sikkerchat_file WHERE conversation_id=$1 AND file_id=$2`
	deleteFileQuery = `DELETE FROM sikkerchat_file WHERE conversation_id=$1 AND file_id=$2`
)

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

func (t *Transcript) storeFile(ctx context.Context, conversationID, fileID string, data []byte) error {
	key, err := t.conversationKey(ctx, conversationID)
	if err != nil {
		return err
	}
	sealed, err := seal(key, data, fileAAD(conversationID, fileID))
	if err != nil {
		return err
	}
	_, err = t.store.Exec(ctx, insertFileQuery, conversationID, fileID, time.Now().UnixMilli(), sealed)
	if err != nil {
		return fmt.Errorf("failed to store file: %w", err)
	}
	return nil
}

// File returns a stored file's bytes, opened.
func (t *Transcript) File(ctx context.Context, conversationID, fileID string) ([]byte, error) {
	var sealed []byte
	err := t.store.QueryRow(ctx, getFileQuery, conversationID, fileID).Scan(&sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrFileNotFound
	} else if err != nil {
		return nil, fmt.Errorf("failed to read file: %w", err)
	}
	key, err := t.conversationKey(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	return open(key, sealed, fileAAD(conversationID, fileID))
}

// QueueGuestFile stores a guest's file for delivery, after checking its real type.
func (sc *Connector) QueueGuestFile(ctx context.Context, conv *Conversation, clientID, name, claimedType string, data []byte) (*TranscriptEntry, bool, error) {
	if !ValidClientID(clientID) {
		return nil, false, ErrBadClientID
	}
	if len(data) == 0 {
		return nil, false, ErrFileEmpty
	} else if int64(len(data)) > sc.MaxGuestFileBytes() {
		return nil, false, ErrFileTooLarge
	}
	detected := DetectFileType(data[:min(len(data), 512)])
	if !FileTypeAllowed(detected) {
		return nil, false, ErrFileTypeRefused
	} else if !ClaimMatches(claimedType, detected) {
		return nil, false, ErrFileTypeClaim
	}
	sum := sha256.Sum256(data)
	info := FileInfo{ID: "g" + randomID(16), Name: SafeFileName(name, detected), Mime: detected, Size: len(data), SHA256: hex.EncodeToString(sum[:])}
	if existing, err := sc.Transcript.ByClientID(ctx, conv.ID, clientID); err != nil {
		return nil, false, err
	} else if existing != nil {
		if prev, ok := FileInfoOf(existing); ok && prev.SHA256 == info.SHA256 {
			return existing, false, nil
		}
		return nil, false, ErrClientIDReused
	}
	if err := sc.Transcript.storeFile(ctx, conv.ID, info.ID, data); err != nil {
		return nil, false, err
	}
	entry := &TranscriptEntry{
		Direction: FromGuest,
		ClientID:  clientID,
		Status:    EntryStored,
		CreatedAt: time.Now(),
		Kind:      "file",
		Extra:     info.Extras(),
	}
	isNew, err := sc.Transcript.Append(ctx, conv.ID, entry)
	if err != nil || !isNew {
		// A concurrent upload with the same client_id won: drop our copy of the bytes.
		_, _ = sc.Store.Exec(ctx, deleteFileQuery, conv.ID, info.ID)
	}
	if err != nil {
		return nil, false, err
	} else if !isNew {
		existing, err := sc.Transcript.ByClientID(ctx, conv.ID, clientID)
		if err == nil && existing != nil {
			if prev, ok := FileInfoOf(existing); !ok || prev.SHA256 != info.SHA256 {
				return nil, false, ErrClientIDReused
			}
		}
		return existing, false, err
	}
	sc.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventMessage, Entry: entry})
	sc.wakeOutbox()
	return entry, true, nil
}

// StoreFileForGuest keeps a file an officer sent, sealed, for the guest to download.
func (sc *Connector) StoreFileForGuest(ctx context.Context, conversationID, name string, data []byte) (FileInfo, error) {
	mimeType := DetectFileType(data[:min(len(data), 512)])
	sum := sha256.Sum256(data)
	info := FileInfo{ID: "o" + randomID(16), Name: SafeFileName(name, mimeType), Mime: mimeType, Size: len(data), SHA256: hex.EncodeToString(sum[:])}
	return info, sc.Transcript.storeFile(ctx, conversationID, info.ID, data)
}
