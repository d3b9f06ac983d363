package bridge

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/sikkerchat/sikkerchat/appservice"
	"github.com/sikkerchat/sikkerchat/bridge/scdb"
	"github.com/sikkerchat/sikkerchat/meta"
)

// Social is the patrol inbox (docs/patrol-inbox.md): Meta's webhooks in,
// one encrypted room per person who writes to the unit's Page or Instagram
// account, officers' replies out through the Send API.
type Social struct {
	*Connector
	room  SocialMatrix
	graph *meta.Client
	media *meta.MediaFetcher
	log   zerolog.Logger

	// lanes are the inbox's lanes being worked on; lastDelivered is when an
	// event last reached its room (Unix ms): while others get through, a
	// failure is the failing event's own.
	lanes         laneWork
	lastDelivered atomic.Int64

	// budgetLock guards the pages' rooms being made (counted in the budget
	// until their rows exist) and the pages whose officers were told that new
	// rooms are held.
	budgetLock sync.Mutex
	reserved   map[string]int
	holding    map[string]bool

	// deliveries bounds the webhook deliveries read at once.
	deliveries chan struct{}

	// wake: a delivery was stored; sendWake: an outbox entry was queued.
	wake     chan struct{}
	sendWake chan struct{}

	server *http.Server
	cancel context.CancelFunc
	done   sync.WaitGroup

	// now is the clock (tests move it).
	now func() time.Time
}

// SocialConversation is a social conversation as the bridge holds it.
type SocialConversation = scdb.Social

// Audit actions of the patrol inbox.
const (
	AuditSocialCreate = "social_create"
	AuditSocialMove   = "social_move"
)

// socialInboxKeyID names the inbox key in key_dir: it seals stored webhook
// deliveries and keys the HMAC that finds a person's conversation.
const socialInboxKeyID = "meta-inbox"

func newSocial(sc *Connector, room SocialMatrix) *Social {
	cfg := sc.Config.Meta
	return &Social{
		Connector: sc,
		room:      room,
		graph: &meta.Client{
			HTTP:     &http.Client{Timeout: 60 * time.Second},
			GraphURL: cfg.GraphURL, Version: cfg.APIVersion, AppSecret: cfg.AppSecret,
		},
		media:      &meta.MediaFetcher{Hosts: cfg.mediaHosts, Origins: cfg.mediaOrigins},
		log:        zerolog.Nop(),
		reserved:   map[string]int{},
		holding:    map[string]bool{},
		deliveries: make(chan struct{}, maxConcurrentDeliveries),
		wake:       make(chan struct{}, 1),
		sendWake:   make(chan struct{}, 1),
		now:        time.Now,
	}
}

// Start opens the webhook listener and starts handling what Meta sent.
func (s *Social) Start(ctx context.Context) error {
	s.log = zerolog.Ctx(ctx).With().Str("component", "patrol_inbox").Logger()
	if _, err := s.inboxKey(ctx); err != nil {
		return fmt.Errorf("failed to open the patrol inbox key: %w", err)
	}
	ln, err := net.Listen("tcp", s.Config.Meta.Listen)
	if err != nil {
		return fmt.Errorf("failed to listen for Meta's webhooks on %s: %w", s.Config.Meta.Listen, err)
	}
	s.server = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          nil,
	}
	runCtx, cancel := context.WithCancel(s.log.WithContext(context.WithoutCancel(ctx)))
	s.cancel = cancel
	s.done.Add(4)
	go func() {
		defer s.done.Done()
		s.runLifecycle(runCtx)
	}()
	go func() {
		defer s.done.Done()
		if err := s.server.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Err(err).Msg("Meta webhook listener stopped")
		}
	}()
	go func() {
		defer s.done.Done()
		s.runInbox(runCtx)
	}()
	go func() {
		defer s.done.Done()
		s.runOutbox(runCtx)
	}()
	s.log.Info().Str("listen", s.Config.Meta.Listen).Int("pages", len(s.Config.Meta.Pages)).Msg("Patrol inbox listening for Meta's webhooks")
	return nil
}

// Stop closes the listener (answers in flight finish) and the workers.
func (s *Social) Stop() {
	if s.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.server.Shutdown(ctx)
		cancel()
	}
	if s.cancel != nil {
		s.cancel()
	}
	s.done.Wait()
}

func (s *Social) kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// inboxKey is the unwrapped inbox key, made on first use.
func (s *Social) inboxKey(ctx context.Context) ([]byte, error) {
	key, err := s.Transcript.conversationKey(ctx, socialInboxKeyID)
	if err == nil {
		return key, nil
	}
	if _, getErr := s.Transcript.Keys().Get(socialInboxKeyID); getErr == nil {
		return nil, err // it is there but does not open: never replace it
	}
	if err = s.Transcript.CreateKey(socialInboxKeyID); err != nil {
		return nil, err
	}
	return s.Transcript.conversationKey(ctx, socialInboxKeyID)
}

// personHash is what finds a person's open conversation: an HMAC of the
// platform, account and person, so that the database never holds the ID in
// a form that can be looked up elsewhere.
func (s *Social) personHash(ctx context.Context, platform meta.Platform, account, person string) ([]byte, error) {
	key, err := s.inboxKey(ctx)
	if err != nil {
		return nil, err
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "person\x00%s\x00%s\x00%s", platform, account, person)
	return mac.Sum(nil), nil
}

func socialAAD(socialID, field string) []byte {
	return []byte("sikkerchat social\x00" + socialID + "\x00" + field)
}

// sealFor seals a field of a social conversation with its key.
func (s *Social) sealFor(ctx context.Context, socialID, field string, plaintext []byte) ([]byte, error) {
	key, err := s.Transcript.conversationKey(ctx, socialID)
	if err != nil {
		return nil, err
	}
	return seal(key, plaintext, socialAAD(socialID, field))
}

// openFor opens a field sealed with sealFor.
func (s *Social) openFor(ctx context.Context, socialID, field string, sealed []byte) ([]byte, error) {
	if sealed == nil {
		return nil, ErrConversationNotOpen
	}
	key, err := s.Transcript.conversationKey(ctx, socialID)
	if err != nil {
		return nil, err
	}
	return open(key, sealed, socialAAD(socialID, field))
}

// person is the page- or Instagram-scoped ID of an open conversation's person.
func (s *Social) person(ctx context.Context, th *SocialConversation) (string, error) {
	p, err := s.openFor(ctx, th.ID, "person", th.PersonSealed)
	return string(p), err
}

// personName is the name the room shows for the person.
func (s *Social) personName(ctx context.Context, th *SocialConversation) string {
	n, err := s.openFor(ctx, th.ID, "name", th.NameSealed)
	if err != nil {
		return platformName(meta.Platform(th.Platform))
	}
	return string(n)
}

func platformName(p meta.Platform) string {
	if p == meta.Instagram {
		return "Instagram"
	}
	return "Messenger"
}

// pageGhostID is the ghost that stands for the unit's Page or Instagram
// account in its rooms (replies written in Meta's own tools come from it).
func pageGhostID(account string) string { return "page" + account }

// stateOf is the room's no.sikkerchat.social state event.
func (s *Social) stateOf(th *SocialConversation) *appservice.SocialState {
	ms := func(t time.Time) int64 {
		if t.IsZero() {
			return 0
		}
		return t.UnixMilli()
	}
	window, _, _, until, _ := meta.Window(th.LastInboundAt, s.now(), s.Config.Meta.HumanAgent)
	if th.Status != scdb.SocialOpen {
		window, until = meta.WindowClosed, time.Time{}
	}
	st := &appservice.SocialState{
		SocialID: th.ID, Platform: th.Platform, Account: th.AccountID, Status: string(th.Status),
		Person: s.room.GhostMXID(th.GhostID), CreatedAt: ms(th.CreatedAt), LastInboundAt: ms(th.LastInboundAt),
		Window: string(window), WindowUntil: ms(until), ClosedAt: ms(th.ClosedAt), PurgeAfter: ms(th.PurgeAfter), Hold: th.Hold,
	}
	if th.LinkedConversation != "" {
		st.LinkedConversations = []string{th.LinkedConversation}
	}
	return st
}

// ensureConversation finds the open conversation of the event's person, or
// opens one with its room. errRetry wraps failures worth another try.
func (s *Social) ensureConversation(ctx context.Context, e meta.Event, page MetaPage) (*SocialConversation, error) {
	hash, err := s.personHash(ctx, e.Platform, e.Account, e.Person)
	if err != nil {
		return nil, err
	}
	th, err := s.DB.Social.GetOpenByPerson(ctx, e.Account, hash)
	if err != nil {
		return nil, retry(err)
	} else if th != nil {
		if th.RoomID == "" {
			return th, s.makeRoom(ctx, th, page)
		}
		return th, nil
	}
	// A new person: a room of their own, within the page's budget.
	if err = s.reserveRoom(ctx, page); err != nil {
		return nil, err
	}
	defer s.releaseRoom(page)
	now := s.now()
	th = &SocialConversation{
		ID: randomID(10), Platform: string(e.Platform), AccountID: e.Account, PersonHash: hash,
		GhostID: "p" + randomID(10), Status: scdb.SocialOpen, CreatedAt: time.UnixMilli(now.UnixMilli()),
		// The window counts from this first message (the room's state shows it from the start).
		LastInboundAt: time.UnixMilli(e.Time.UnixMilli()),
	}
	if err = s.Transcript.CreateKey(th.ID); err != nil {
		return nil, retry(fmt.Errorf("failed to make the conversation key: %w", err))
	}
	name := s.lookUpName(ctx, e, page)
	if th.PersonSealed, err = s.sealFor(ctx, th.ID, "person", []byte(e.Person)); err != nil {
		return nil, err
	}
	if th.NameSealed, err = s.sealFor(ctx, th.ID, "name", []byte(name)); err != nil {
		return nil, err
	}
	if err = s.DB.Social.Insert(ctx, th); errors.Is(err, scdb.ErrPersonTaken) {
		_ = s.Transcript.DestroyKey(th.ID)
		return s.ensureConversation(ctx, e, page)
	} else if err != nil {
		_ = s.Transcript.DestroyKey(th.ID)
		return nil, retry(err)
	}
	if err = s.Audit.Append(ctx, "system", AuditSocialCreate, th.ID, string(e.Platform)); err != nil {
		s.log.Err(err).Msg("Failed to write audit row for a new social conversation")
	}
	return th, s.makeRoom(ctx, th, page)
}

// lookUpName asks the profile API for the person's name where allowed, else
// makes "Messenger-bruker 1234".
func (s *Social) lookUpName(ctx context.Context, e meta.Event, page MetaPage) string {
	if s.Config.Meta.FetchProfiles {
		p, err := s.graph.GetProfile(ctx, e.Platform, e.Person, page.AccessToken)
		if name := p.DisplayName(); err == nil && name != "" {
			return name
		} else if err != nil {
			s.log.Info().Str("class", string(meta.ClassOf(err))).Msg("No profile for the person; using a number")
		}
	}
	n, err := rand.Int(rand.Reader, big.NewInt(9000))
	if err != nil {
		n = big.NewInt(0)
	}
	return s.Config.validatedLanguage.T(msgSocialPersonName, platformName(e.Platform), n.Int64()+1000)
}

// makeRoom creates the conversation's room (again, after a failure).
func (s *Social) makeRoom(ctx context.Context, th *SocialConversation, page MetaPage) error {
	lang := s.Config.validatedLanguage
	platform := platformName(meta.Platform(th.Platform))
	name := s.personName(ctx, th)
	roomID, err := s.room.CreateSocialRoom(ctx, SocialRoomSpec{
		SocialID:   th.ID,
		Name:       platform + ": " + name,
		Topic:      lang.T(msgSocialTopic, platform, s.Config.UnitName),
		PersonID:   th.GhostID,
		PersonName: name,
		PageID:     pageGhostID(th.AccountID),
		PageName:   s.Config.UnitName + " (" + platform + ")",
		Officers:   s.Config.Meta.Officers,
		State:      s.stateOf(th),
	})
	if roomID != "" {
		th.RoomID = roomID
		if setErr := s.DB.Social.SetRoom(ctx, th.ID, roomID); setErr != nil {
			return retry(setErr)
		}
	}
	if err != nil {
		return retry(err)
	}
	// Invited only now, with the room known to the inbox and bound to its
	// portal: nothing an officer writes can fall between.
	if err = s.room.InviteOfficers(ctx, roomID, s.Config.Meta.Officers); err != nil {
		return retry(err)
	}
	s.room.SocialNotice(ctx, roomID, lang.T(msgSocialOpened, platform, s.Config.commandPrefix))
	s.log.Info().Str("social_id", th.ID).Str("platform", th.Platform).Msg("Social conversation opened")
	return nil
}

// publishSocialState sends the room's state event from the stored row.
func (s *Social) publishSocialState(ctx context.Context, socialID string) {
	// One at a time per room, each from the stored row (as publishState does
	// for secure conversations).
	lock, _ := s.Conversations.stateLocks.LoadOrStore("social:"+socialID, &sync.Mutex{})
	mu := lock.(*sync.Mutex)
	mu.Lock()
	defer mu.Unlock()
	th, err := s.DB.Social.Get(ctx, socialID)
	if err != nil || th == nil || th.RoomID == "" {
		return
	}
	if err = s.room.SetSocialState(ctx, th.RoomID, s.stateOf(th)); err != nil {
		zerolog.Ctx(ctx).Warn().Err(err).Str("social_id", socialID).Msg("Failed to update the social conversation's state event")
	}
}

// retryError marks a failure that another try may get past (the homeserver
// or the database was away); anything else is given up for the event.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

func retry(err error) error {
	if err == nil {
		return nil
	}
	var re *retryError
	if errors.As(err, &re) {
		return err
	}
	return &retryError{err}
}

func isRetry(err error) bool {
	var re *retryError
	return errors.As(err, &re)
}
