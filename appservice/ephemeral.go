package appservice

import (
	"context"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
)

// EphemeralSync brings typing notifications and read receipts to a bridge whose
// homeserver does not push them to appservices (Dendrite has no MSC2409): it
// runs /sync as the bridge bot and hands the rooms' ephemeral events on.
type EphemeralSync struct {
	Client   *mautrix.Client
	Dispatch func(ctx context.Context, evt *event.Event)
}

// Run syncs until ctx ends, backing off while the homeserver is unreachable.
func (es *EphemeralSync) Run(ctx context.Context) {
	log := zerolog.Ctx(ctx).With().Str("component", "ephemeral_sync").Logger()
	ctx = log.WithContext(ctx)
	filterID := ""
	// Homeservers that honour filters send only what is needed; Dendrite ignores
	// them and sends whole timelines, which are dropped here.
	if resp, err := es.Client.CreateFilter(ctx, &mautrix.Filter{
		Presence:    &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
		AccountData: &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
		Room: &mautrix.RoomFilter{
			Timeline:    &mautrix.FilterPart{Limit: 1, NotTypes: []event.Type{{Type: "*"}}},
			State:       &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
			AccountData: &mautrix.FilterPart{NotTypes: []event.Type{{Type: "*"}}},
			Ephemeral:   &mautrix.FilterPart{Types: []event.Type{event.EphemeralEventTyping, event.EphemeralEventReceipt}},
		},
	}); err == nil {
		filterID = resp.FilterID
	} else {
		log.Warn().Err(err).Msg("Failed to create sync filter, syncing without one")
	}
	since := ""
	backoff := time.Second
	for ctx.Err() == nil {
		resp, err := es.Client.FullSyncRequest(ctx, mautrix.ReqSync{Timeout: 30000, Since: since, FilterID: filterID})
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Warn().Err(err).Dur("retry_in", backoff).Msg("Ephemeral sync failed")
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 30*time.Second)
			continue
		}
		backoff = time.Second
		// The first answer is the past: only what happens from now on matters.
		if since != "" {
			for roomID, room := range resp.Rooms.Join {
				for _, evt := range room.Ephemeral.Events {
					evt.RoomID = roomID
					evt.Type.Class = event.EphemeralEventType
					evt.Mautrix.EventSource = event.SourceJoin | event.SourceEphemeral
					if err := evt.Content.ParseRaw(evt.Type); err != nil {
						continue
					}
					es.Dispatch(ctx, evt)
				}
			}
		}
		since = resp.NextBatch
	}
}
