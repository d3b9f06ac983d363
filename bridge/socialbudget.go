package bridge

import (
	"context"
	"fmt"
	"time"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
)

// A page's budget of new rooms (network.meta.new_room_budget per
// new_room_window, for the Page and its Instagram account together): a raid
// of throwaway accounts must not make a key, a profile lookup, a room and
// invites for each. Past the budget a new person's first event is held in
// its lane (nothing is dropped, and the person's later events wait behind
// it), the officers are told once, and the gauge
// sikkerchat_meta_held_people counts who waits.

// heldError: the page's budget of new rooms is used up until a time.
type heldError struct {
	page  string
	until time.Time
}

func (e *heldError) Error() string {
	return fmt.Sprintf("the budget of new rooms of page %s is used up until %s", e.page, e.until.Format(time.RFC3339))
}

// reserveRoom counts a room about to be made against its page's budget, or
// returns a heldError when the budget is used up. releaseRoom undoes it once
// the room's row exists (and counts itself) or was not made.
func (s *Social) reserveRoom(ctx context.Context, page MetaPage) error {
	s.budgetLock.Lock()
	defer s.budgetLock.Unlock()
	window := s.Config.Meta.newRoomWindow
	now := s.now()
	accounts := []string{page.PageID}
	if page.InstagramAccountID != "" {
		accounts = append(accounts, page.InstagramAccountID)
	}
	made, oldest, err := s.DB.Social.CountCreatedSince(ctx, accounts, now.Add(-window))
	if err != nil {
		return retry(err)
	}
	if made+s.reserved[page.PageID] >= s.Config.Meta.NewRoomBudget {
		until := oldest.Add(window)
		if made == 0 || !until.After(now) {
			until = now.Add(time.Second) // the rooms counted are still being made
		}
		return &heldError{page: page.PageID, until: until}
	}
	s.reserved[page.PageID]++
	return nil
}

func (s *Social) releaseRoom(page MetaPage) {
	s.budgetLock.Lock()
	defer s.budgetLock.Unlock()
	if s.reserved[page.PageID]--; s.reserved[page.PageID] <= 0 {
		delete(s.reserved, page.PageID)
	}
}

// hold parks a new person's first event until the budget has room, and
// tells the officers once when their page starts holding.
func (s *Social) hold(ctx context.Context, row *scdb.MetaEvent, held *heldError) {
	first := row.State != scdb.MetaEventHeld
	row.State, row.NextAttemptAt = scdb.MetaEventHeld, held.until
	s.reschedule(ctx, row)
	if first {
		s.log.Info().Str("page", held.page).Time("until", held.until).Msg("Holding a new person's messages: the page's budget of new rooms is used up")
	}
	s.countHeld(ctx)
	s.budgetLock.Lock()
	tell := !s.holding[held.page]
	s.holding[held.page] = true
	s.budgetLock.Unlock()
	if tell {
		lang := s.Config.validatedLanguage
		s.room.NotifyOfficers(ctx, s.Config.Meta.Officers, lang.T(msgSocialRoomsHeld, s.pageName(held.page), s.Config.Meta.NewRoomBudget, s.Config.Meta.NewRoomWindow))
	}
}

// countHeld brings the held-people gauge up to date, and tells the officers
// when the last person held has a room.
func (s *Social) countHeld(ctx context.Context) {
	_, held, err := s.DB.MetaEvent.Count(ctx)
	if err != nil {
		return
	}
	s.Metrics.MetaHeld.Set(float64(held))
	if held > 0 {
		return
	}
	s.budgetLock.Lock()
	var released []string
	for page := range s.holding {
		released = append(released, page)
		delete(s.holding, page)
	}
	s.budgetLock.Unlock()
	lang := s.Config.validatedLanguage
	for _, page := range released {
		s.room.NotifyOfficers(ctx, s.Config.Meta.Officers, lang.T(msgSocialRoomsReleased, s.pageName(page)))
	}
}

// pageName is how officers know a page: the unit's name and the page's ID.
func (s *Social) pageName(pageID string) string {
	return fmt.Sprintf("%s (%s)", s.Config.UnitName, pageID)
}
