package bridge

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// The guest's side: what the guest page asks of the bridge. Joining with a
// link and code word, the session, sending text and files (stored first,
// then delivered by the outbox), typing and read marks.

// Guests handles the guest page's requests.
type Guests struct {
	*Connector
	// background sends guests' typing and read marks.
	background *backgroundSender
}

// Join checks the code word and consumes the invite once. It returns the new
// session's cookie value; only its hash is stored.
func (g *Guests) Join(ctx context.Context, token, code string) (sessionToken string, conv *Conversation, err error) {
	if err = ParseInviteToken(token); err != nil {
		return "", nil, ErrBadToken
	}
	if NormalizeCode(code) == "" {
		return "", nil, ErrCodeMissing
	}
	tokenHash := HashInviteToken(token)
	inv, err := g.DB.Invite.Get(ctx, tokenHash)
	if err != nil {
		return "", nil, fmt.Errorf("failed to get invite: %w", err)
	} else if inv == nil {
		return "", nil, ErrInviteUnknown
	}
	conv, err = g.DB.Conversation.Get(ctx, inv.ConversationID)
	if err != nil {
		return "", nil, fmt.Errorf("failed to get conversation: %w", err)
	}
	log := zerolog.Ctx(ctx).With().Str("conversation_id", inv.ConversationID).Logger()
	now := time.Now()
	if err = joinable(conv, inv, now, g.Config.MaxCodeAttempts); err != nil {
		return "", nil, err
	}
	attempt, claimed, err := g.DB.Invite.ClaimAttempt(ctx, tokenHash, now, g.Config.MaxCodeAttempts)
	if err != nil {
		return "", nil, fmt.Errorf("failed to claim code attempt: %w", err)
	} else if !claimed {
		// Another request used, burned or revoked the invite since it was read.
		return "", nil, g.whyNotJoinable(ctx, tokenHash, now)
	}
	if !CheckCode(token, code, inv.CodeMAC) {
		return "", nil, g.codeFailed(ctx, conv, tokenHash, attempt)
	}
	raw := make([]byte, 32)
	if _, err = rand.Read(raw); err != nil {
		return "", nil, err
	}
	sessionToken = base64.RawURLEncoding.EncodeToString(raw)
	// Consume, session and activation together: a crash or a concurrent
	// reissue can never leave a used link without its session, or a session
	// that outlived the reissue.
	err = g.DB.DoTxn(ctx, nil, func(ctx context.Context) error {
		if consumed, err := g.DB.Invite.Consume(ctx, tokenHash, now, g.Config.MaxCodeAttempts); err != nil {
			return fmt.Errorf("failed to consume invite: %w", err)
		} else if !consumed {
			// Another browser won the race for the same link, or wrong guesses
			// running beside this request burned it first.
			return g.whyNotJoinable(ctx, tokenHash, now)
		}
		if err := g.DB.Session.Insert(ctx, hashSessionToken(sessionToken), conv.ID, now); err != nil {
			return fmt.Errorf("failed to store guest session: %w", err)
		}
		if err := g.DB.Conversation.Activate(ctx, conv.ID, now); err != nil {
			return fmt.Errorf("failed to activate conversation: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	firstJoin := conv.Status == StatusCreated
	conv.Status = StatusActive
	if conv.JoinedAt.IsZero() {
		conv.JoinedAt = now
	}
	log.Info().Bool("first_join", firstJoin).Msg("Guest joined")
	if err := g.Audit.Append(ctx, "guest", AuditJoin, conv.ID, ""); err != nil {
		log.Err(err).Msg("Failed to write audit row for join")
	}
	g.spawn(func() { g.announceJoin(context.WithoutCancel(ctx), conv, firstJoin) })
	return sessionToken, conv, nil
}

// whyNotJoinable reads the invite again after a conditional update found it
// no longer joinable, so that the guest learns what happened meanwhile.
func (g *Guests) whyNotJoinable(ctx context.Context, tokenHash []byte, now time.Time) error {
	inv, err := g.DB.Invite.Get(ctx, tokenHash)
	if err != nil {
		return fmt.Errorf("failed to get invite: %w", err)
	} else if inv == nil {
		return ErrInviteUnknown
	}
	conv, err := g.DB.Conversation.Get(ctx, inv.ConversationID)
	if err != nil {
		return fmt.Errorf("failed to get conversation: %w", err)
	}
	if err = joinable(conv, inv, now, g.Config.MaxCodeAttempts); err != nil {
		return err
	}
	return ErrInviteRevoked
}

// codeFailed records a wrong code word whose attempt was already claimed;
// the request that made the last allowed attempt burns the invite.
func (g *Guests) codeFailed(ctx context.Context, conv *Conversation, tokenHash []byte, attempt int) error {
	g.Metrics.Error(ErrKindWrongCode)
	zerolog.Ctx(ctx).Info().Str("conversation_id", conv.ID).Int("failed_attempts", attempt).Msg("Wrong code word for invite")
	if err := g.Audit.Append(ctx, "guest", AuditCodeFailed, conv.ID, fmt.Sprintf("attempt %d", attempt)); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for wrong code")
	}
	left := g.Config.MaxCodeAttempts - attempt
	if left > 0 {
		return &CodeWrongError{AttemptsLeft: left}
	}
	if err := g.DB.Invite.Burn(ctx, tokenHash, time.Now()); err != nil {
		return fmt.Errorf("failed to burn invite: %w", err)
	}
	zerolog.Ctx(ctx).Warn().Str("conversation_id", conv.ID).Msg("Invite burned after too many wrong code words")
	if err := g.Audit.Append(ctx, "system", AuditBurned, conv.ID, ""); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for burned invite")
	}
	g.Conversations.sendRoomNotice(context.WithoutCancel(ctx), conv, g.Config.validatedLanguage.T(msgInviteBurned, g.Config.MaxCodeAttempts, g.Config.commandPrefix))
	return ErrInviteRevoked
}

func (g *Guests) announceJoin(ctx context.Context, conv *Conversation, firstJoin bool) {
	g.Conversations.sendRoomNotice(ctx, conv, g.Config.validatedLanguage.T(msgGuestJoined))
	if firstJoin {
		g.Conversations.updateStateEvent(ctx, conv)
	}
}

// CheckSession returns the live session for a cookie value and notes the
// activity. A session is idle after network.guest.session_idle_timeout
// without requests or an open page.
func (g *Guests) CheckSession(ctx context.Context, sessionToken string) (*GuestSession, *Conversation, error) {
	if sessionToken == "" || len(sessionToken) > 128 {
		return nil, nil, ErrNoSession
	}
	hash := hashSessionToken(sessionToken)
	sess, err := g.DB.Session.Get(ctx, hash)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to get guest session: %w", err)
	} else if sess == nil {
		return nil, nil, ErrNoSession
	}
	conv, err := g.DB.Conversation.Get(ctx, sess.ConversationID)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to get conversation: %w", err)
	} else if conv == nil || conv.Status == StatusClosed || conv.Status == StatusExpired {
		return nil, nil, ErrConversationNotOpen
	} else if !sess.RevokedAt.IsZero() {
		return nil, nil, ErrNoSession
	}
	now := time.Now()
	if now.Sub(sess.LastSeenAt) > g.Config.Guest.SessionIdle {
		_ = g.DB.Session.Revoke(ctx, hash, now)
		return nil, nil, ErrSessionIdle
	}
	// Writing on every request would make each one a database write; a few
	// seconds of slack cannot matter against a timeout of minutes.
	if now.Sub(sess.LastSeenAt) > 10*time.Second {
		if err = g.DB.Session.Touch(ctx, hash, now); err != nil {
			return nil, nil, fmt.Errorf("failed to note guest activity: %w", err)
		}
		sess.LastSeenAt = now
	}
	return sess, conv, nil
}

// EndSession is the guest leaving (quick exit): their browser loses access,
// the conversation stays open for the police.
func (g *Guests) EndSession(ctx context.Context, sessionToken string) error {
	return g.DB.Session.Revoke(ctx, hashSessionToken(sessionToken), time.Now())
}

// QueueGuestText stores a guest's text for delivery. The bool is false when
// the same client_id was already accepted (the stored entry is returned).
func (g *Guests) QueueText(ctx context.Context, conv *Conversation, clientID, text string) (*TranscriptEntry, bool, error) {
	if !ValidClientID(clientID) {
		return nil, false, ErrBadClientID
	}
	if !utf8.ValidString(text) {
		return nil, false, ErrEmptyMessage
	}
	text = strings.TrimRight(text, " \t\r\n")
	if strings.TrimSpace(text) == "" {
		return nil, false, ErrEmptyMessage
	} else if utf8.RuneCountInString(text) > g.Config.Guest.MaxMessageLength {
		return nil, false, ErrMessageTooLong
	}
	entry := &TranscriptEntry{
		Direction: FromGuest,
		ClientID:  clientID,
		Status:    EntryStored,
		CreatedAt: time.Now(),
		Kind:      "text",
		Text:      text,
	}
	isNew, err := g.Transcript.Append(ctx, conv.ID, entry)
	if err != nil {
		return nil, false, err
	}
	if !isNew {
		existing, err := g.Transcript.ByClientID(ctx, conv.ID, clientID)
		if err != nil {
			return nil, false, err
		} else if existing == nil || existing.Text != text || existing.Kind != "text" {
			return nil, false, ErrClientIDReused
		}
		return existing, false, nil
	}
	g.Metrics.GuestPosted(guestTxnID(conv.ID, clientID), RequestStart(ctx))
	g.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventMessage, Entry: entry})
	g.Outbox.Wake(conv.ID, entry)
	return entry, true, nil
}

// QueueGuestFile stores a guest's file for delivery, after checking its real type.
func (g *Guests) QueueFile(ctx context.Context, conv *Conversation, clientID, name, claimedType string, data []byte) (*TranscriptEntry, bool, error) {
	if !ValidClientID(clientID) {
		return nil, false, ErrBadClientID
	}
	stored, err := g.StoreFile(ctx, conv, name, claimedType, bytes.NewReader(data))
	if err != nil {
		return nil, false, err
	}
	return g.QueueStoredFile(ctx, conv, clientID, stored)
}

// GuestUpload is a guest's file whose bytes are stored, not yet in the transcript.
type GuestUpload struct {
	info FileInfo
}

// StoreGuestFile reads a guest's file as it arrives: the type is checked on
// the first bytes, then the file is sealed and stored a chunk at a time, up
// to the size limit. It goes to the room once QueueStoredGuestFile puts it
// in the transcript (or is dropped by DiscardGuestFile).
func (g *Guests) StoreFile(ctx context.Context, conv *Conversation, name, claimedType string, r io.Reader) (*GuestUpload, error) {
	check := func(head []byte) error {
		detected := DetectFileType(head)
		if !FileTypeAllowed(detected) {
			return ErrFileTypeRefused
		} else if !ClaimMatches(claimedType, detected) {
			return ErrFileTypeClaim
		}
		return nil
	}
	fileID := "g" + randomID(16)
	stored, err := g.Transcript.storeFileStream(ctx, conv.ID, fileID, r, g.MaxFileBytes(), check)
	if err != nil {
		return nil, err
	}
	return &GuestUpload{info: FileInfo{ID: fileID, Name: SafeFileName(name, stored.mime), Mime: stored.mime,
		Size: int(stored.size), SHA256: stored.sha256}}, nil
}

// DiscardGuestFile drops a stored upload that will not be sent.
func (g *Guests) DiscardFile(ctx context.Context, conv *Conversation, up *GuestUpload) {
	if err := g.DB.File.Delete(context.WithoutCancel(ctx), conv.ID, up.info.ID); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to drop a guest file that will not be sent")
	}
}

// QueueStoredGuestFile puts a stored upload in the transcript for delivery.
// The bool is false when the same client_id was already accepted for the
// same file (the stored entry is returned and this copy dropped).
func (g *Guests) QueueStoredFile(ctx context.Context, conv *Conversation, clientID string, up *GuestUpload) (*TranscriptEntry, bool, error) {
	if !ValidClientID(clientID) {
		g.DiscardFile(ctx, conv, up)
		return nil, false, ErrBadClientID
	}
	entry := &TranscriptEntry{
		Direction: FromGuest,
		ClientID:  clientID,
		Status:    EntryStored,
		CreatedAt: time.Now(),
		Kind:      "file",
		Extra:     up.info.Extras(),
	}
	isNew, err := g.Transcript.Append(ctx, conv.ID, entry)
	if err != nil || !isNew {
		// Refused, or a send with the same client_id came first: drop our copy of the bytes.
		g.DiscardFile(ctx, conv, up)
	}
	if err != nil {
		return nil, false, err
	} else if !isNew {
		existing, err := g.Transcript.ByClientID(ctx, conv.ID, clientID)
		if err != nil {
			return nil, false, err
		}
		if prev, ok := FileInfoOf(existing); !ok || prev.SHA256 != up.info.SHA256 {
			return nil, false, ErrClientIDReused
		}
		return existing, false, nil
	}
	g.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventMessage, Entry: entry})
	g.Outbox.Wake(conv.ID, entry)
	return entry, true, nil
}

// GuestTyping shows (or stops showing) the guest as typing in the room.
func (g *Guests) Typing(ctx context.Context, conv *Conversation, typing bool) {
	timeout := time.Duration(0)
	if typing {
		timeout = guestTypingTimeout
	}
	g.inBackground(ctx, conv.ID+"/typing", func(ctx context.Context) {
		g.Matrix.GuestTyping(ctx, conv, typing, timeout)
	})
}

// GuestRead sends the guest's read receipt for the newest officer message up
// to seq, so officers see that the guest has read it. It reads only the
// plain columns it needs, nothing sealed.
func (g *Guests) Read(ctx context.Context, conv *Conversation, seq int64) error {
	if maxSeq, err := g.DB.Transcript.MaxSeq(ctx, conv.ID); err != nil {
		return err
	} else if seq > maxSeq {
		return ErrUnknownSeq
	}
	eventID, err := g.DB.Transcript.LatestToGuest(ctx, conv.ID, seq)
	if err != nil || eventID == "" {
		return err
	}
	g.inBackground(ctx, conv.ID+"/read", func(ctx context.Context) {
		if err := g.Matrix.GuestRead(ctx, conv, eventID); err != nil {
			zerolog.Ctx(ctx).Warn().Err(err).Str("conversation_id", conv.ID).Msg("Failed to send guest read receipt")
		}
	})
	return nil
}

// MaxGuestFileBytes is the largest file a guest can send now.
func (g *Guests) MaxFileBytes() int64 {
	limit := g.Config.Guest.MaxFileBytes
	// Encryption adds nothing to the size, but leave room for the request.
	if hs := g.homeserverMaxFile.Load(); hs > 0 && hs < limit {
		limit = hs
	}
	return limit
}
