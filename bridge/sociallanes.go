package bridge

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"syscall"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
	"github.com/sikkerchat/sikkerchat/meta"
)

// The patrol inbox's deliveries become lanes, one per person
// (docs/patrol-inbox.md "Order and trouble"): a lane is handled in order,
// lanes never wait for each other, and an event that keeps failing for a
// reason of its own is given up and the room told, so that one attachment
// or one broken event never holds back anybody else.
const (
	// laneWorkers is how many lanes are worked on at once.
	laneWorkers = 4
	// laneMaxAttempts: an event is given up after this many failures of its
	// own. A failure while the homeserver or the database is away does not
	// count, unless other events got through meanwhile.
	laneMaxAttempts = 10
	// laneMaxAge: any event still not handled this long after it arrived is
	// given up, outage or not (Meta lets the unit answer for 7 days at most).
	laneMaxAge = 7 * 24 * time.Hour
	// laneMaxBackoff bounds the wait between two tries of one event.
	laneMaxBackoff = time.Minute
)

// laneWork is the lanes being worked on.
type laneWork struct {
	mu   sync.Mutex
	busy map[string]bool
	wg   sync.WaitGroup
}

// start takes a lane, unless it is being worked on or every worker is busy.
func (lw *laneWork) start(lane string) bool {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	if lw.busy == nil {
		lw.busy = map[string]bool{}
	}
	if lw.busy[lane] || len(lw.busy) >= laneWorkers {
		return false
	}
	lw.busy[lane] = true
	lw.wg.Add(1)
	return true
}

func (lw *laneWork) finish(lane string) {
	lw.mu.Lock()
	delete(lw.busy, lane)
	lw.mu.Unlock()
	lw.wg.Done()
}

// runInbox works on the lanes for as long as the bridge runs.
func (s *Social) runInbox(ctx context.Context) {
	defer s.lanes.wg.Wait()
	for {
		wait := s.dispatch(ctx)
		select {
		case <-ctx.Done():
			return
		case <-s.wake:
		case <-time.After(wait):
		}
	}
}

// dispatch splits stored deliveries into their lanes and starts a worker on
// each lane whose first event is due, as far as workers are free; it returns
// how long to wait before looking again (a finished worker and a new
// delivery wake it earlier).
func (s *Social) dispatch(ctx context.Context) time.Duration {
	if err := s.splitDeliveries(ctx); err != nil && ctx.Err() == nil {
		s.log.Err(err).Msg("Failed to split stored webhook deliveries into their lanes")
	}
	now := s.now()
	ready, err := s.DB.MetaEvent.Ready(ctx, now, 4*laneWorkers)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Err(err).Msg("Failed to read the patrol inbox's lanes")
		}
		return time.Second
	}
	for _, row := range ready {
		if !s.lanes.start(row.Lane) {
			continue
		}
		go func() {
			defer s.kick(s.wake)
			defer s.lanes.finish(row.Lane)
			s.work(ctx, row)
		}()
	}
	wait := time.Minute
	if next, err := s.DB.MetaEvent.NextDue(ctx, now); err == nil && !next.IsZero() {
		wait = min(wait, max(next.Sub(now), 10*time.Millisecond))
	}
	return wait
}

// drainInbox handles everything that is due, as the running inbox does, and
// returns once nothing due is left; true when events wait for a later try.
func (s *Social) drainInbox(ctx context.Context) bool {
	for ctx.Err() == nil {
		s.dispatch(ctx)
		s.lanes.wg.Wait()
		ready, err := s.DB.MetaEvent.Ready(ctx, s.now(), 1)
		if err != nil || len(ready) == 0 {
			break
		}
	}
	waiting, _, err := s.DB.MetaEvent.Count(ctx)
	return err != nil || waiting > 0
}

// splitDeliveries moves every stored delivery's events into their lanes.
func (s *Social) splitDeliveries(ctx context.Context) error {
	for ctx.Err() == nil {
		batch, err := s.DB.MetaDelivery.Pending(ctx, 20)
		if err != nil {
			return err
		} else if len(batch) == 0 {
			return nil
		}
		for _, d := range batch {
			if err = s.splitDelivery(ctx, d); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// splitDelivery replaces one delivery by its events, each sealed on its own
// and put in the lane of the person it is about. Events that were already
// older than the replay window when the delivery arrived are left out.
func (s *Social) splitDelivery(ctx context.Context, d *scdb.MetaDelivery) error {
	key, err := s.inboxKey(ctx)
	if err != nil {
		return err
	}
	body, err := open(key, d.Sealed, deliveryAAD(d.ID))
	if err != nil {
		s.log.Err(err).Msg("A stored webhook delivery does not open with the inbox key; dropping it")
		s.Metrics.Error(ErrKindMetaEvent)
		return s.DB.MetaDelivery.Done(ctx, d.ID)
	}
	events, err := meta.Parse(body)
	if err != nil {
		s.log.Err(err).Msg("A stored webhook delivery is no longer readable; dropping it")
		s.Metrics.Error(ErrKindMetaEvent)
		return s.DB.MetaDelivery.Done(ctx, d.ID)
	}
	arrived := time.Unix(0, d.Arrival)
	rows := make([]*scdb.MetaEvent, 0, len(events))
	for i, e := range events {
		if s.isStale(e, arrived) {
			s.Metrics.Error(ErrKindMetaStale)
			s.log.Warn().Str("kind", string(e.Kind)).Str("platform", string(e.Platform)).Dur("age", arrived.Sub(e.Time)).
				Msg("Left out an event older than the replay window")
			continue
		}
		data, err := e.Encode()
		if err != nil {
			return fmt.Errorf("failed to keep an event: %w", err)
		}
		rowID := d.ID + "." + strconv.Itoa(i)
		sealed, err := seal(key, data, metaEventAAD(rowID))
		if err != nil {
			return err
		}
		rows = append(rows, &scdb.MetaEvent{ID: rowID, Lane: laneOf(key, e), Arrival: d.Arrival, Position: i, Sealed: sealed})
	}
	return s.DB.MetaDelivery.Split(ctx, d.ID, rows)
}

// isStale tells an event that was older than the replay window when it
// arrived: Meta no longer sends such events, so it is a replay.
func (s *Social) isStale(e meta.Event, arrived time.Time) bool {
	return !e.Time.IsZero() && arrived.Sub(e.Time) > s.Config.Meta.replayWindow
}

// laneOf names the lane of an event's person without naming the person.
func laneOf(key []byte, e meta.Event) string {
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "lane\x00%s\x00%s\x00%s", e.Platform, e.Account, e.Person)
	return hex.EncodeToString(mac.Sum(nil)[:16])
}

func metaEventAAD(rowID string) []byte {
	return []byte("sikkerchat meta event\x00" + rowID)
}

// work handles the first event of a lane once and records the outcome.
func (s *Social) work(ctx context.Context, row *scdb.MetaEvent) {
	key, err := s.inboxKey(ctx)
	if err != nil {
		s.tryLater(ctx, row, nil, retry(err))
		return
	}
	data, err := open(key, row.Sealed, metaEventAAD(row.ID))
	if err != nil {
		s.log.Err(err).Msg("A stored Meta event does not open with the inbox key; dropping it")
		s.Metrics.Error(ErrKindMetaEvent)
		s.finishRow(ctx, row)
		return
	}
	e, err := meta.DecodeEvent(data)
	if err != nil {
		s.log.Err(err).Msg("A stored Meta event is no longer readable; dropping it")
		s.Metrics.Error(ErrKindMetaEvent)
		s.finishRow(ctx, row)
		return
	}
	if row.State == scdb.MetaEventGivenUp {
		err = s.tellGivenUp(ctx, e, row)
	} else {
		err = s.handleEvent(ctx, e)
	}
	if err != nil && ctx.Err() != nil {
		return // stopping: the event stays as it was, for the next start
	}
	var held *heldError
	switch {
	case err == nil:
		s.lastDelivered.Store(s.now().UnixMilli())
		s.finishRow(ctx, row)
	case errors.As(err, &held):
		s.hold(ctx, row, held)
	case !isRetry(err):
		s.Metrics.Error(ErrKindMetaEvent)
		s.log.Err(err).Str("kind", string(e.Kind)).Str("platform", string(e.Platform)).Msg("Gave up a Meta event")
		s.finishRow(ctx, row)
	default:
		s.tryLater(ctx, row, &e, err)
	}
}

// finishRow takes a handled event out of its lane.
func (s *Social) finishRow(ctx context.Context, row *scdb.MetaEvent) {
	if err := s.DB.MetaEvent.Done(ctx, row.ID); err != nil {
		s.log.Err(err).Msg("Failed to take a handled Meta event out of its lane")
	}
	if row.State == scdb.MetaEventHeld {
		s.countHeld(ctx)
	}
}

// tryLater schedules the next try of an event that failed, or gives it up.
func (s *Social) tryLater(ctx context.Context, row *scdb.MetaEvent, e *meta.Event, err error) {
	now := s.now()
	previous := row.LastAttemptAt
	if previous.IsZero() {
		previous = time.Unix(0, row.Arrival)
	}
	// An outage is when nothing gets through: a failure while other events
	// reached their rooms is this event's own.
	own := !isOutage(err) || s.lastDelivered.Load() > previous.UnixMilli()
	row.Tries++
	if own {
		row.Attempts++
	}
	row.LastAttemptAt = now
	kind, platform := "", ""
	if e != nil {
		kind, platform = string(e.Kind), string(e.Platform)
	}
	switch {
	case row.State == scdb.MetaEventGivenUp && row.Attempts >= laneMaxAttempts:
		s.Metrics.Error(ErrKindMetaEvent)
		s.log.Err(err).Str("kind", kind).Str("platform", platform).Msg("Could not tell the room that a Meta event was given up; dropping it")
		s.finishRow(ctx, row)
		return
	case row.State != scdb.MetaEventGivenUp && (row.Attempts >= laneMaxAttempts || now.Sub(time.Unix(0, row.Arrival)) >= laneMaxAge):
		s.Metrics.Error(ErrKindMetaEvent)
		s.log.Err(err).Str("kind", kind).Str("platform", platform).Int("attempts", row.Attempts).Int("tries", row.Tries).
			Msg("Gave up a Meta event that kept failing; the room is told")
		wasHeld := row.State == scdb.MetaEventHeld
		row.State, row.Attempts, row.NextAttemptAt = scdb.MetaEventGivenUp, 0, now
		s.reschedule(ctx, row)
		if wasHeld {
			s.countHeld(ctx)
		}
		return
	}
	s.log.Warn().Err(err).Str("kind", kind).Str("platform", platform).Int("attempts", row.Attempts).Int("tries", row.Tries).Bool("outage", !own).
		Msg("A Meta event could not be handled yet; trying again")
	wasHeld := row.State == scdb.MetaEventHeld
	if wasHeld {
		row.State = scdb.MetaEventWaiting
	}
	row.NextAttemptAt = now.Add(laneBackoff(row.Tries))
	s.reschedule(ctx, row)
	if wasHeld {
		s.countHeld(ctx)
	}
}

func (s *Social) reschedule(ctx context.Context, row *scdb.MetaEvent) {
	if err := s.DB.MetaEvent.Reschedule(ctx, row); err != nil {
		s.log.Err(err).Msg("Failed to record a try at a Meta event")
	}
}

// laneBackoff is the wait after the nth try: 1 s, 2 s, 4 s, … up to a minute.
func laneBackoff(tries int) time.Duration {
	if tries > 6 {
		return laneMaxBackoff
	}
	return min(time.Second<<max(tries-1, 0), laneMaxBackoff)
}

// isOutage tells failures that say the homeserver or the database could
// not be reached from failures of the request itself.
func isOutage(err error) bool {
	var httpErr mautrix.HTTPError
	if errors.As(err, &httpErr) {
		if httpErr.Response == nil {
			return true
		}
		switch httpErr.Response.StatusCode {
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded)
}

// tellGivenUp tells the person's room that one of their events could not be
// brought over, and marks the event done so that Meta's redelivery does not
// start it again. Reads and delivery receipts are given up without a word.
func (s *Social) tellGivenUp(ctx context.Context, e meta.Event, row *scdb.MetaEvent) error {
	if e.Kind == meta.KindRead || e.Kind == meta.KindDelivery {
		return nil
	}
	hash, err := s.personHash(ctx, e.Platform, e.Account, e.Person)
	if err != nil {
		return retry(err)
	}
	th, err := s.DB.Social.GetOpenByPerson(ctx, e.Account, hash)
	if err != nil {
		return retry(err)
	} else if th == nil || th.RoomID == "" {
		s.log.Warn().Str("kind", string(e.Kind)).Str("platform", string(e.Platform)).Msg("A given-up Meta event has no room to be told in")
		return nil
	}
	eventID := e.ID()
	lang := s.Config.validatedLanguage
	text := lang.T(msgSocialGivenUp, lang.T(givenUpWord(e)), platformName(e.Platform), row.Tries)
	if _, err = s.send(ctx, th, "", socialTxnID(eventID, givenUpPart), event.EventMessage, &event.Content{Parsed: renderNotice(text)}, true); err != nil {
		return err
	}
	return retry(s.DB.SocialEvent.Finish(ctx, eventID, ""))
}

// givenUpPart is the transaction part of the notice that an event was given up.
const givenUpPart = 99

// givenUpWord is what the room is told was lost.
func givenUpWord(e meta.Event) messageKey {
	switch e.Kind {
	case meta.KindReaction:
		return msgSocialLostReaction
	case meta.KindEdit:
		return msgSocialLostEdit
	case meta.KindDeleted:
		return msgSocialLostWithdrawal
	case meta.KindEcho:
		return msgSocialLostEcho
	case meta.KindPostback:
		return msgSocialLostPostback
	}
	if e.Message != nil && len(e.Message.Attachments) > 0 {
		return msgSocialLostAttachmentMessage
	}
	return msgSocialLostMessage
}
