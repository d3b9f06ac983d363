package bridge

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sikkerchat/sikkerchat/bridge/scdb"
)

// countMessage adds one to the anonymous daily counts.
func (t *Transcript) countMessage(ctx context.Context, entry *TranscriptEntry) {
	_ = t.db.Stats.CountMessage(ctx, entry.CreatedAt, entry.Direction, entry.Kind)
}

// Stats are anonymous figures for a period: no identities, no content.
type Stats struct {
	Days                 int            `json:"days"`
	Created              int            `json:"created"`
	Opened               int            `json:"opened"`
	Closed               int            `json:"closed"`
	Expired              int            `json:"expired"`
	MedianSecondsToOpen  *float64       `json:"median_seconds_to_open"`
	MedianSecondsToClose *float64       `json:"median_seconds_to_close"`
	Messages             map[string]int `json:"messages"`
	Files                map[string]int `json:"files"`
}

// Statistics computes Stats for the last `days` days from the audit trail
// (which outlives purges) and the daily counts.
func Statistics(ctx context.Context, db *scdb.Database, days int) (*Stats, error) {
	if days < 1 || days > 3660 {
		return nil, fmt.Errorf("days must be between 1 and 3660")
	}
	since := time.Now().Add(-time.Duration(days) * 24 * time.Hour)
	st := &Stats{Days: days, Messages: map[string]int{}, Files: map[string]int{}}
	rows, err := db.Audit.LifecycleSince(ctx, since)
	if err != nil {
		return nil, err
	}
	created := map[string]int64{}
	opened := map[string]bool{}
	var toOpen, toClose []float64
	for _, r := range rows {
		at := r.At.UnixMilli()
		switch r.Action {
		case AuditCreate:
			st.Created++
			created[r.ConversationID] = at
		case AuditJoin:
			if !opened[r.ConversationID] {
				opened[r.ConversationID] = true
				st.Opened++
				if c, ok := created[r.ConversationID]; ok {
					toOpen = append(toOpen, float64(at-c)/1000)
				}
			}
		case AuditClose:
			if r.Detail == CloseInviteExpired {
				st.Expired++
			} else {
				st.Closed++
			}
			if c, ok := created[r.ConversationID]; ok {
				toClose = append(toClose, float64(at-c)/1000)
			}
		}
	}
	st.MedianSecondsToOpen, st.MedianSecondsToClose = median(toOpen), median(toClose)
	counts, err := db.Stats.CountsSince(ctx, since)
	if err != nil {
		return nil, err
	}
	for _, c := range counts {
		if c.Kind == "file" {
			st.Files[string(c.Direction)] += c.Count
		} else {
			st.Messages[string(c.Direction)] += c.Count
		}
	}
	return st, nil
}

func median(xs []float64) *float64 {
	if len(xs) == 0 {
		return nil
	}
	slices.Sort(xs)
	m := xs[len(xs)/2]
	if len(xs)%2 == 0 {
		m = (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
	}
	return &m
}
