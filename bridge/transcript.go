package bridge

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
)

// The guest-side transcript is what the guest page shows: history on reload
// and messages waiting to be pushed. It is sealed with a per-conversation key
// that the master key wraps; deleting the key row crypto-shreds the transcript.

// TranscriptEntry is one item the guest page shows, in clear, in memory only.
type TranscriptEntry struct {
	Seq           int64       `json:"-"`
	Direction     Direction   `json:"-"`
	MatrixEventID id.EventID  `json:"-"`
	ClientID      string      `json:"-"`
	Status        EntryStatus `json:"-"`
	CreatedAt     time.Time   `json:"-"`
	Kind          string      `json:"kind"`
	Text          string      `json:"text,omitempty"`
	SenderName    string      `json:"sender_name,omitempty"`
	ReplyTo       int64       `json:"reply_to,omitempty"`
	Edited        bool        `json:"edited,omitempty"`
	Deleted       bool        `json:"deleted,omitempty"`
	Extra         EntryExtras `json:"extra,omitempty"`
}

// EntryExtras carries what later kinds of entries need (files, edits) without
// a schema change: it is sealed with the rest.
type EntryExtras map[string]string

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func seal(key, plaintext, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err = rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

func open(key, sealed, aad []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sealed data too short")
	}
	nonce, ciphertext := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	return aead.Open(nil, nonce, ciphertext, aad)
}

// Transcript reads and writes the sealed guest-side transcript.
type Transcript struct {
	db        *scdb.Database
	keys      *KeyStore
	masterKey []byte

	// Sequence numbers are allocated under a per-conversation lock; the bridge
	// is a single process, and the primary key catches anything else.
	locks sync.Map

	// unwrapped: conversation ID → its key, kept in memory while the
	// conversation is open (read from key_dir once, not at every message) and
	// wiped when it is destroyed.
	keyLock   sync.RWMutex
	unwrapped map[string][]byte
}

func NewTranscript(db *scdb.Database, keys *KeyStore, masterKey []byte) *Transcript {
	return &Transcript{db: db, keys: keys, masterKey: masterKey, unwrapped: map[string][]byte{}}
}

// CreateKey makes a fresh conversation key and stores it wrapped by the master key.
func (t *Transcript) CreateKey(conversationID string) error {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	wrapped, err := seal(t.masterKey, key, wrapAAD(conversationID))
	if err != nil {
		return err
	}
	return t.keys.Put(conversationID, wrapped)
}

// Keys is the key store the transcript opens its entries with.
func (t *Transcript) Keys() *KeyStore {
	return t.keys
}

// DestroyKey crypto-shreds a conversation's transcript: the key file is
// overwritten and removed, the copy in memory overwritten and forgotten.
func (t *Transcript) DestroyKey(conversationID string) error {
	t.keyLock.Lock()
	defer t.keyLock.Unlock()
	if key, ok := t.unwrapped[conversationID]; ok {
		clear(key)
		delete(t.unwrapped, conversationID)
	}
	return t.keys.Destroy(conversationID)
}

// ErrWrongMasterKey: key_dir has conversation keys and the master key opens none of them.
var ErrWrongMasterKey = errors.New("the master key opens none of the conversation keys in key_dir " +
	"(wrong network.master_key, or key_dir from another installation); " +
	"every open conversation would fail at its next message")

// CheckMasterKey opens every conversation key with the master key, so that a
// wrong key stops the bridge at start instead of failing each conversation at
// its next message. It fails only when there are keys and none opens; keys
// that do not open while others do are counted for the caller to report
// (those conversations cannot be read, the rest can).
func (t *Transcript) CheckMasterKey() (checked, unreadable int, err error) {
	ids, err := t.keys.List()
	if err != nil {
		return 0, 0, err
	}
	for _, conversationID := range ids {
		wrapped, err := t.keys.Get(conversationID)
		if errors.Is(err, errNoKey) {
			continue // destroyed while we looked
		} else if err != nil {
			return checked, unreadable, err
		}
		checked++
		if _, err = open(t.masterKey, wrapped, wrapAAD(conversationID)); err != nil {
			unreadable++
		}
	}
	if checked > 0 && unreadable == checked {
		return checked, unreadable, ErrWrongMasterKey
	}
	return checked, unreadable, nil
}

func (t *Transcript) conversationKey(ctx context.Context, conversationID string) ([]byte, error) {
	t.keyLock.RLock()
	key, ok := t.unwrapped[conversationID]
	t.keyLock.RUnlock()
	if ok {
		return key, nil
	}
	t.keyLock.Lock()
	defer t.keyLock.Unlock()
	if key, ok = t.unwrapped[conversationID]; ok {
		return key, nil
	}
	key, err := t.unwrapKey(conversationID)
	if err != nil {
		return nil, err
	}
	t.unwrapped[conversationID] = key
	return key, nil
}

// unwrapKey reads a conversation key from key_dir and opens it.
func (t *Transcript) unwrapKey(conversationID string) ([]byte, error) {
	wrapped, err := t.keys.Get(conversationID)
	if err != nil {
		return nil, fmt.Errorf("failed to load conversation key: %w", err)
	}
	key, err := open(t.masterKey, wrapped, wrapAAD(conversationID))
	if err != nil {
		return nil, fmt.Errorf("failed to unwrap conversation key: %w", err)
	}
	return key, nil
}

func labelAAD(conversationID string) []byte {
	return []byte("label:" + conversationID)
}

// SealLabel seals an officer's label with the conversation key, so that it is
// unreadable from the close on, like everything else of the conversation.
func (t *Transcript) SealLabel(ctx context.Context, conversationID, label string) ([]byte, error) {
	if label == "" {
		return nil, nil
	}
	key, err := t.conversationKey(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	return seal(key, []byte(label), labelAAD(conversationID))
}

// OpenLabel is a conversation's label: "" when it has none, or when it is
// closed (its key is gone).
func (t *Transcript) OpenLabel(ctx context.Context, conv *Conversation) string {
	if conv.Label != "" || len(conv.SealedLabel) == 0 {
		return conv.Label
	}
	key, err := t.conversationKey(ctx, conv.ID)
	if err != nil {
		return ""
	}
	label, err := open(key, conv.SealedLabel, labelAAD(conv.ID))
	if err != nil {
		return ""
	}
	return string(label)
}

func entryAAD(conversationID string, seq int64, dir Direction) []byte {
	return []byte(conversationID + "/" + strconv.FormatInt(seq, 10) + "/" + string(dir))
}

// Append seals and stores an entry. An entry with a Matrix event ID that is
// already stored is ignored, so a redelivered appservice transaction adds
// nothing; it reports whether the entry was new.
func (t *Transcript) Append(ctx context.Context, conversationID string, entry *TranscriptEntry) (bool, error) {
	plaintext, err := json.Marshal(entry)
	if err != nil {
		return false, err
	}
	lock, _ := t.locks.LoadOrStore(conversationID, &sync.Mutex{})
	lock.(*sync.Mutex).Lock()
	defer lock.(*sync.Mutex).Unlock()
	var seq int64
	var inserted bool
	err = t.db.DoTxn(ctx, nil, func(ctx context.Context) error {
		// Hold the conversation row while appending: a close that runs at the
		// same time either sees this entry (and delivers it before it shreds
		// anything) or has closed first (and this is refused). Nothing the
		// guest saw as sent is shredded unseen.
		if open, err := t.db.Conversation.HoldOpen(ctx, conversationID); err != nil {
			return fmt.Errorf("failed to hold conversation: %w", err)
		} else if !open {
			return ErrConversationNotOpen
		}
		// Read under the hold: a close cannot be destroying it now.
		key, err := t.conversationKey(ctx, conversationID)
		if err != nil {
			return err
		}
		if seq, err = t.db.Transcript.MaxSeq(ctx, conversationID); err != nil {
			return fmt.Errorf("failed to get transcript position: %w", err)
		}
		seq++
		sealed, err := seal(key, plaintext, entryAAD(conversationID, seq, entry.Direction))
		if err != nil {
			return err
		}
		inserted, err = t.db.Transcript.Insert(ctx, &scdb.TranscriptRow{ConversationID: conversationID, Seq: seq, Direction: entry.Direction,
			MatrixEventID: entry.MatrixEventID, ClientID: entry.ClientID, Status: entry.Status, CreatedAt: entry.CreatedAt, Sealed: sealed})
		if err != nil {
			return fmt.Errorf("failed to store transcript entry: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if inserted {
		entry.Seq = seq
		t.countMessage(ctx, entry)
		return true, nil
	}
	// Nothing inserted: fine if it is a redelivery of a known event or client
	// message, an error otherwise (the position was taken), never a silent loss.
	var existing *TranscriptEntry
	if entry.MatrixEventID != "" {
		existing, err = t.ByEvent(ctx, conversationID, entry.MatrixEventID)
	} else if entry.ClientID != "" {
		existing, err = t.ByClientID(ctx, conversationID, entry.ClientID)
	}
	if err != nil {
		return false, err
	} else if existing == nil {
		return false, fmt.Errorf("transcript position %d of %s was taken", seq, conversationID)
	}
	entry.Seq = existing.Seq
	return false, nil
}

// Since returns the entries after seq, opened.
func (t *Transcript) Since(ctx context.Context, conversationID string, after int64) ([]*TranscriptEntry, error) {
	// The key first: a closed conversation has none, whatever rows are left.
	key, err := t.conversationKey(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	rows, err := t.db.Transcript.Since(ctx, conversationID, after)
	if err != nil {
		return nil, fmt.Errorf("failed to read transcript: %w", err)
	}
	return openRows(key, conversationID, rows...)
}

// ByClientID finds a guest message by the guest's own ID; nil if there is none.
func (t *Transcript) ByClientID(ctx context.Context, conversationID, clientID string) (*TranscriptEntry, error) {
	return t.openOne(ctx, conversationID)(t.db.Transcript.ByClientID(ctx, conversationID, clientID))
}

// BySeq finds an entry by its position; nil if there is none.
func (t *Transcript) BySeq(ctx context.Context, conversationID string, seq int64) (*TranscriptEntry, error) {
	return t.openOne(ctx, conversationID)(t.db.Transcript.BySeq(ctx, conversationID, seq))
}

// ByEvent finds an entry by its Matrix event; nil if there is none.
func (t *Transcript) ByEvent(ctx context.Context, conversationID string, eventID id.EventID) (*TranscriptEntry, error) {
	return t.openOne(ctx, conversationID)(t.db.Transcript.ByEvent(ctx, conversationID, eventID))
}

// MarkDelivered records the Matrix event of a guest message; false if it was already delivered.
func (t *Transcript) MarkDelivered(ctx context.Context, conversationID string, seq int64, eventID id.EventID) (bool, error) {
	ok, err := t.db.Transcript.MarkDelivered(ctx, conversationID, seq, eventID)
	if err != nil {
		return false, fmt.Errorf("failed to mark guest message delivered: %w", err)
	}
	return ok, nil
}

// openOne opens the row a lookup found (nil stays nil).
func (t *Transcript) openOne(ctx context.Context, conversationID string) func(*scdb.TranscriptRow, error) (*TranscriptEntry, error) {
	return func(row *scdb.TranscriptRow, err error) (*TranscriptEntry, error) {
		if err != nil {
			return nil, fmt.Errorf("failed to read transcript: %w", err)
		}
		key, err := t.conversationKey(ctx, conversationID)
		if err != nil {
			return nil, err
		} else if row == nil {
			return nil, nil
		}
		entries, err := openRows(key, conversationID, row)
		if err != nil {
			return nil, err
		}
		return entries[0], nil
	}
}

// openRows opens sealed rows with the conversation key.
func openRows(key []byte, conversationID string, rows ...*scdb.TranscriptRow) ([]*TranscriptEntry, error) {
	entries := make([]*TranscriptEntry, 0, len(rows))
	for _, row := range rows {
		plaintext, err := open(key, row.Sealed, entryAAD(conversationID, row.Seq, row.Direction))
		if err != nil {
			return nil, fmt.Errorf("failed to open transcript entry %d: %w", row.Seq, err)
		}
		entry := &TranscriptEntry{}
		if err = json.Unmarshal(plaintext, entry); err != nil {
			return nil, err
		}
		entry.Seq, entry.Direction, entry.CreatedAt = row.Seq, row.Direction, row.CreatedAt
		entry.MatrixEventID, entry.ClientID, entry.Status = row.MatrixEventID, row.ClientID, row.Status
		entries = append(entries, entry)
	}
	return entries, nil
}

// Revise re-seals an entry after fn changed it (edits and deletions).
func (t *Transcript) Revise(ctx context.Context, conversationID string, eventID id.EventID, fn func(*TranscriptEntry)) (*TranscriptEntry, error) {
	entry, err := t.ByEvent(ctx, conversationID, eventID)
	if err != nil || entry == nil {
		return nil, err
	}
	fn(entry)
	plaintext, err := json.Marshal(entry)
	if err != nil {
		return nil, err
	}
	key, err := t.conversationKey(ctx, conversationID)
	if err != nil {
		return nil, err
	}
	sealed, err := seal(key, plaintext, entryAAD(conversationID, entry.Seq, entry.Direction))
	if err != nil {
		return nil, err
	}
	if err = t.db.Transcript.Reseal(ctx, conversationID, entry.Seq, sealed); err != nil {
		return nil, fmt.Errorf("failed to revise transcript entry: %w", err)
	}
	return entry, nil
}
