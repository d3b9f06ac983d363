package bridge

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
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
	inv, err := sc.DB.Invite.Get(ctx, tokenHash)
	if err != nil {
		return "", nil, fmt.Errorf("failed to get invite: %w", err)
	} else if inv == nil {
		return "", nil, ErrInviteUnknown
	}
	conv, err = sc.DB.Conversation.Get(ctx, inv.ConversationID)
	if err != nil {
		return "", nil, fmt.Errorf("failed to get conversation: %w", err)
	}
	log := zerolog.Ctx(ctx).With().Str("conversation_id", inv.ConversationID).Logger()
	now := time.Now()
	if err = joinable(conv, inv, now, sc.Config.MaxCodeAttempts); err != nil {
		return "", nil, err
	}
	attempt, claimed, err := sc.DB.Invite.ClaimAttempt(ctx, tokenHash, now, sc.Config.MaxCodeAttempts)
	if err != nil {
		return "", nil, fmt.Errorf("failed to claim code attempt: %w", err)
	} else if !claimed {
		// Another request used, burned or revoked the invite since it was read.
		return "", nil, sc.whyNotJoinable(ctx, tokenHash, now)
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
	err = sc.DB.DoTxn(ctx, nil, func(ctx context.Context) error {
		if consumed, err := sc.DB.Invite.Consume(ctx, tokenHash, now, sc.Config.MaxCodeAttempts); err != nil {
			return fmt.Errorf("failed to consume invite: %w", err)
		} else if !consumed {
			// Another browser won the race for the same link, or wrong guesses
			// running beside this request burned it first.
			return sc.whyNotJoinable(ctx, tokenHash, now)
		}
		if err := sc.DB.Session.Insert(ctx, hashSessionToken(sessionToken), conv.ID, now); err != nil {
			return fmt.Errorf("failed to store guest session: %w", err)
		}
		if err := sc.DB.Conversation.Activate(ctx, conv.ID, now); err != nil {
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
	inv, err := sc.DB.Invite.Get(ctx, tokenHash)
	if err != nil {
		return fmt.Errorf("failed to get invite: %w", err)
	} else if inv == nil {
		return ErrInviteUnknown
	}
	conv, err := sc.DB.Conversation.Get(ctx, inv.ConversationID)
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
	if err := sc.DB.Invite.Burn(ctx, tokenHash, time.Now()); err != nil {
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
	sess, err := sc.DB.Session.Get(ctx, hash)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to get guest session: %w", err)
	} else if sess == nil {
		return nil, nil, ErrNoSession
	}
	conv, err := sc.DB.Conversation.Get(ctx, sess.ConversationID)
	if err != nil {
		return nil, nil, fmt.Errorf("failed to get conversation: %w", err)
	} else if conv == nil || conv.Status == StatusClosed || conv.Status == StatusExpired {
		return nil, nil, ErrConversationNotOpen
	} else if !sess.RevokedAt.IsZero() {
		return nil, nil, ErrNoSession
	}
	now := time.Now()
	if now.Sub(sess.LastSeenAt) > sc.Config.Guest.SessionIdle {
		_ = sc.DB.Session.Revoke(ctx, hash, now)
		return nil, nil, ErrSessionIdle
	}
	// Writing on every request would make each one a database write; a few
	// seconds of slack cannot matter against a timeout of minutes.
	if now.Sub(sess.LastSeenAt) > 10*time.Second {
		if err = sc.DB.Session.Touch(ctx, hash, now); err != nil {
			return nil, nil, fmt.Errorf("failed to note guest activity: %w", err)
		}
		sess.LastSeenAt = now
	}
	return sess, conv, nil
}

// EndSession is the guest leaving (quick exit): their browser loses access,
// the conversation stays open for the police.
func (sc *Connector) EndSession(ctx context.Context, sessionToken string) error {
	return sc.DB.Session.Revoke(ctx, hashSessionToken(sessionToken), time.Now())
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
	err = sc.DB.DoTxn(ctx, nil, func(ctx context.Context) error {
		if err := sc.DB.Invite.RevokeUnused(ctx, conv.ID, now); err != nil {
			return err
		}
		if err := sc.DB.Session.RevokeConversation(ctx, conv.ID, now); err != nil {
			return err
		}
		if err := sc.DB.Conversation.SetInviteExpiry(ctx, conv.ID, expires); err != nil {
			return err
		}
		return sc.DB.Invite.Insert(ctx, &Invite{TokenHash: tokenHash, ConversationID: conv.ID, CodeMAC: CodeMAC(token, code), CreatedAt: now, ExpiresAt: expires})
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
