package bridge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"
)

// Join errors, each with its own message on the guest page.
var (
	ErrInviteUnknown = errors.New("invite unknown")
	ErrInviteUsed    = errors.New("invite already used")
	ErrInviteExpired = errors.New("invite expired")
	ErrInviteRevoked = errors.New("invite revoked")
	ErrCodeWrong     = errors.New("wrong code word")
	ErrCodeMissing   = errors.New("code word missing")
	ErrBadToken      = errBadToken
	ErrNoSession     = errors.New("no guest session")
	ErrSessionIdle   = errors.New("guest session expired")
	// ErrConversationNotOpen is returned for guest actions on a conversation
	// that is closed, expired or unknown.
	ErrConversationNotOpen = errors.New("conversation is not open")
)

// CodeWrongError tells the guest how many tries are left.
type CodeWrongError struct{ AttemptsLeft int }

func (e *CodeWrongError) Error() string { return ErrCodeWrong.Error() }
func (e *CodeWrongError) Unwrap() error { return ErrCodeWrong }

// GuestSession is a browser's right to act as the guest of one conversation.
type GuestSession struct {
	TokenHash      []byte
	ConversationID string
	CreatedAt      time.Time
	LastSeenAt     time.Time
	RevokedAt      time.Time
}

const (
	insertSessionQuery              = `INSERT INTO sikkerchat_guest_session (token_hash, conversation_id, created_at, last_seen_at) VALUES ($1, $2, $3, $3)`
	getSessionQuery                 = `SELECT token_hash, conversation_id, created_at, last_seen_at, revoked_at FROM sikkerchat_guest_session WHERE token_hash=$1`
	touchSessionQuery               = `UPDATE sikkerchat_guest_session SET last_seen_at=$2 WHERE token_hash=$1 AND revoked_at IS NULL`
	revokeSessionQuery              = `UPDATE sikkerchat_guest_session SET revoked_at=$2 WHERE token_hash=$1 AND revoked_at IS NULL`
	revokeConversationSessionsQuery = `UPDATE sikkerchat_guest_session SET revoked_at=$2 WHERE conversation_id=$1 AND revoked_at IS NULL`
	revokeConversationInvitesQuery  = `UPDATE sikkerchat_invite SET revoked_at=$2 WHERE conversation_id=$1 AND revoked_at IS NULL AND used_at IS NULL`
	// The attempt is claimed before the code word is checked, in one
	// conditional UPDATE: guesses fired in parallel can never be checked more
	// than max_code_attempts times. A right code gives its claim back when it
	// consumes the invite.
	claimAttemptQuery = `UPDATE sikkerchat_invite SET failed_attempts=failed_attempts+1
		WHERE token_hash=$1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at>$2 AND failed_attempts<$3
		RETURNING failed_attempts`
	consumeInviteQuery = `UPDATE sikkerchat_invite SET used_at=$2, failed_attempts=failed_attempts-1
		WHERE token_hash=$1 AND used_at IS NULL AND revoked_at IS NULL AND expires_at>$2 AND failed_attempts<=$3`
	burnInviteQuery      = `UPDATE sikkerchat_invite SET revoked_at=$2 WHERE token_hash=$1 AND revoked_at IS NULL`
	activateQuery        = `UPDATE sikkerchat_conversation SET status='active', joined_at=COALESCE(joined_at, $2) WHERE id=$1 AND status IN ('created', 'active')`
	setInviteExpiryQuery = `UPDATE sikkerchat_conversation SET invite_expires_at=$2 WHERE id=$1`
)

func scanSession(row *sql.Row) (*GuestSession, error) {
	var s GuestSession
	var created, seen int64
	var revoked sql.NullInt64
	err := row.Scan(&s.TokenHash, &s.ConversationID, &created, &seen, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	s.CreatedAt, s.LastSeenAt, s.RevokedAt = time.UnixMilli(created), time.UnixMilli(seen), timeFromNull(revoked)
	return &s, nil
}

func hashSessionToken(token string) []byte {
	sum := sha256.Sum256([]byte("sikkerchat-session:" + token))
	return sum[:]
}

// Join checks the code word and consumes the invite once. It returns the new
// session's cookie value; only its hash is stored.
func (sc *Connector) Join(ctx context.Context, token, code string) (sessionToken string, conv *Conversation, err error) {
	if err = ParseInviteToken(token); err != nil {
		return "", nil, ErrBadToken
	}
	if NormalizeCode(code) == "" {
		return "", nil, ErrCodeMissing
	}
	tokenHash := HashInviteToken(token)
	inv, err := sc.Store.GetInvite(ctx, tokenHash)
	if err != nil {
		return "", nil, fmt.Errorf("failed to get invite: %w", err)
	} else if inv == nil {
		return "", nil, ErrInviteUnknown
	}
	conv, err = sc.Store.GetConversation(ctx, inv.ConversationID)
	if err != nil {
		return "", nil, fmt.Errorf("failed to get conversation: %w", err)
	}
	log := zerolog.Ctx(ctx).With().Str("conversation_id", inv.ConversationID).Logger()
	now := time.Now()
	if err = joinable(conv, inv, now, sc.Config.MaxCodeAttempts); err != nil {
		return "", nil, err
	}
	var attempt int
	err = sc.Store.QueryRow(ctx, claimAttemptQuery, tokenHash, now.UnixMilli(), sc.Config.MaxCodeAttempts).Scan(&attempt)
	if errors.Is(err, sql.ErrNoRows) {
		// Another request used, burned or revoked the invite since it was read.
		return "", nil, sc.whyNotJoinable(ctx, tokenHash, now)
	} else if err != nil {
		return "", nil, fmt.Errorf("failed to claim code attempt: %w", err)
	}
	if !CheckCode(token, code, inv.CodeMAC) {
		return "", nil, sc.codeFailed(ctx, conv, tokenHash, attempt)
	}
	raw := make([]byte, 32)
	if _, err = rand.Read(raw); err != nil {
		return "", nil, err
	}
	sessionToken = base64.RawURLEncoding.EncodeToString(raw)
	// Consume, session and activation together: a crash or a concurrent
	// reissue can never leave a used link without its session, or a session
	// that outlived the reissue.
	err = sc.Store.DoTxn(ctx, nil, func(ctx context.Context) error {
		res, err := sc.Store.Exec(ctx, consumeInviteQuery, tokenHash, now.UnixMilli(), sc.Config.MaxCodeAttempts)
		if err != nil {
			return fmt.Errorf("failed to consume invite: %w", err)
		} else if n, _ := res.RowsAffected(); n != 1 {
			// Another browser won the race for the same link, or wrong guesses
			// running beside this request burned it first.
			return sc.whyNotJoinable(ctx, tokenHash, now)
		}
		if _, err = sc.Store.Exec(ctx, insertSessionQuery, hashSessionToken(sessionToken), conv.ID, now.UnixMilli()); err != nil {
			return fmt.Errorf("failed to store guest session: %w", err)
		}
		if _, err = sc.Store.Exec(ctx, activateQuery, conv.ID, now.UnixMilli()); err != nil {
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
	if err := sc.Audit.Append(ctx, "guest", AuditJoin, conv.ID, ""); err != nil {
		log.Err(err).Msg("Failed to write audit row for join")
	}
	go sc.announceJoin(context.WithoutCancel(ctx), conv, firstJoin)
	return sessionToken, conv, nil
}

// joinable tells why an invite cannot be joined now, or nil.
func joinable(conv *Conversation, inv *Invite, now time.Time, maxAttempts int) error {
	switch {
	case conv == nil || conv.Status == StatusClosed || conv.Status == StatusExpired || !inv.RevokedAt.IsZero():
		return ErrInviteRevoked
	case !inv.UsedAt.IsZero():
		return ErrInviteUsed
	case !now.Before(inv.ExpiresAt):
		return ErrInviteExpired
	case inv.FailedAttempts >= maxAttempts:
		return ErrInviteRevoked // burned, or about to be by the request that made the last wrong guess
	}
	return nil
}

// whyNotJoinable reads the invite again after a conditional update found it
// no longer joinable, so that the guest learns what happened meanwhile.
func (sc *Connector) whyNotJoinable(ctx context.Context, tokenHash []byte, now time.Time) error {
	inv, err := sc.Store.GetInvite(ctx, tokenHash)
	if err != nil {
		return fmt.Errorf("failed to get invite: %w", err)
	} else if inv == nil {
		return ErrInviteUnknown
	}
	conv, err := sc.Store.GetConversation(ctx, inv.ConversationID)
	if err != nil {
		return fmt.Errorf("failed to get conversation: %w", err)
	}
	if err = joinable(conv, inv, now, sc.Config.MaxCodeAttempts); err != nil {
		return err
	}
	return ErrInviteRevoked
}

// codeFailed records a wrong code word whose attempt was already claimed;
// the request that made the last allowed attempt burns the invite.
func (sc *Connector) codeFailed(ctx context.Context, conv *Conversation, tokenHash []byte, attempt int) error {
	sc.Metrics.Error(ErrKindWrongCode)
	zerolog.Ctx(ctx).Info().Str("conversation_id", conv.ID).Int("failed_attempts", attempt).Msg("Wrong code word for invite")
	if err := sc.Audit.Append(ctx, "guest", AuditCodeFailed, conv.ID, fmt.Sprintf("attempt %d", attempt)); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for wrong code")
	}
	left := sc.Config.MaxCodeAttempts - attempt
	if left > 0 {
		return &CodeWrongError{AttemptsLeft: left}
	}
	if _, err := sc.Store.Exec(ctx, burnInviteQuery, tokenHash, time.Now().UnixMilli()); err != nil {
		return fmt.Errorf("failed to burn invite: %w", err)
	}
	zerolog.Ctx(ctx).Warn().Str("conversation_id", conv.ID).Msg("Invite burned after too many wrong code words")
	if err := sc.Audit.Append(ctx, "system", AuditBurned, conv.ID, ""); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for burned invite")
	}
	sc.sendRoomNotice(context.WithoutCancel(ctx), conv, sc.Config.validatedLanguage.T(msgInviteBurned, sc.Config.MaxCodeAttempts, sc.commandPrefix()))
	return ErrInviteRevoked
}

func (sc *Connector) announceJoin(ctx context.Context, conv *Conversation, firstJoin bool) {
	sc.sendRoomNotice(ctx, conv, sc.Config.validatedLanguage.T(msgGuestJoined))
	if firstJoin {
		sc.updateStateEvent(ctx, conv)
	}
}

func (sc *Connector) sendRoomNotice(ctx context.Context, conv *Conversation, text string) {
	sc.Matrix.Notice(ctx, conv, text)
}

func (sc *Connector) updateStateEvent(ctx context.Context, conv *Conversation) {
	sc.Matrix.UpdateState(ctx, conv, sc.StateOf(conv))
}

// CheckSession returns the live session for a cookie value and notes the
// activity. A session is idle after network.guest.session_idle_timeout
// without requests or an open page.
func (sc *Connector) CheckSession(ctx context.Context, sessionToken string) (*GuestSession, *Conversation, error) {
	if sessionToken == "" || len(sessionToken) > 128 {
		return nil, nil, ErrNoSession
	}
	hash := hashSessionToken(sessionToken)
	sess, err := scanSession(sc.Store.QueryRow(ctx, getSessionQuery, hash))
	if err != nil {
		return nil, nil, fmt.Errorf("failed to get guest session: %w", err)
	} else if sess == nil {
		return nil, nil, ErrNoSession
	}
	conv, err := sc.Store.GetConversation(ctx, sess.ConversationID)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to get conversation: %w", err)
	} else if conv == nil || conv.Status == StatusClosed || conv.Status == StatusExpired {
		return nil, nil, ErrConversationNotOpen
	} else if !sess.RevokedAt.IsZero() {
		return nil, nil, ErrNoSession
	}
	now := time.Now()
	if now.Sub(sess.LastSeenAt) > sc.Config.Guest.SessionIdle {
		_, _ = sc.Store.Exec(ctx, revokeSessionQuery, hash, now.UnixMilli())
		return nil, nil, ErrSessionIdle
	}
	// Writing on every request would make each one a database write; a few
	// seconds of slack cannot matter against a timeout of minutes.
	if now.Sub(sess.LastSeenAt) > 10*time.Second {
		if _, err = sc.Store.Exec(ctx, touchSessionQuery, hash, now.UnixMilli()); err != nil {
			return nil, nil, fmt.Errorf("failed to note guest activity: %w", err)
		}
		sess.LastSeenAt = now
	}
	return sess, conv, nil
}

// EndSession is the guest leaving (quick exit): their browser loses access,
// the conversation stays open for the police.
func (sc *Connector) EndSession(ctx context.Context, sessionToken string) error {
	_, err := sc.Store.Exec(ctx, revokeSessionQuery, hashSessionToken(sessionToken), time.Now().UnixMilli())
	return err
}

// Reissue revokes every invite and session of a conversation and makes a new
// link and code word.
func (sc *Connector) Reissue(ctx context.Context, conv *Conversation, actor string) (*CreatedConversation, error) {
	if conv.Status == StatusClosed || conv.Status == StatusExpired {
		return nil, ErrConversationNotOpen
	}
	token, tokenHash, err := NewInviteToken()
	if err != nil {
		return nil, err
	}
	code, err := NewCodeWord()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	expires := now.Add(sc.Config.inviteTTL)
	err = sc.Store.DoTxn(ctx, nil, func(ctx context.Context) error {
		if _, err := sc.Store.Exec(ctx, revokeConversationInvitesQuery, conv.ID, now.UnixMilli()); err != nil {
			return err
		}
		if _, err := sc.Store.Exec(ctx, revokeConversationSessionsQuery, conv.ID, now.UnixMilli()); err != nil {
			return err
		}
		if _, err := sc.Store.Exec(ctx, setInviteExpiryQuery, conv.ID, expires.UnixMilli()); err != nil {
			return err
		}
		_, err := sc.Store.Exec(ctx, insertInviteQuery, tokenHash, conv.ID, CodeMAC(token, code), now.UnixMilli(), expires.UnixMilli(), nil, nil, 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("failed to reissue invite: %w", err)
	}
	conv.InviteExpiresAt = expires
	sc.Hub.Publish(conv.ID, GuestEvent{Kind: GuestEventClosed, Reason: "reissued"})
	sc.updateStateEvent(ctx, conv)
	ghostName := ""
	if sc.Bridge != nil {
		if ghost, err := sc.Bridge.GetExistingGhostByID(ctx, ghostIDOf(conv)); err == nil && ghost != nil {
			ghostName = ghost.Name
		}
	}
	zerolog.Ctx(ctx).Info().Str("conversation_id", conv.ID).Msg("Invite reissued")
	if err = sc.Audit.Append(ctx, actor, AuditReissue, conv.ID, ""); err != nil {
		zerolog.Ctx(ctx).Err(err).Msg("Failed to write audit row for reissue")
	}
	return &CreatedConversation{Conversation: conv, GuestName: ghostName, URL: sc.Config.InviteURL(token), Code: code}, nil
}
