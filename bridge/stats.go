package bridge

import (
	"context"
	"fmt"
	"slices"
	"time"
)

const countMessageQuery = `INSERT INTO sikkerchat_stats_daily (day, direction, kind, count) VALUES ($1, $2, $3, 1)
	ON CONFLICT (day, direction, kind) DO UPDATE SET count=sikkerchat_stats_daily.count+1`

// countMessage adds one to the anonymous daily counts.
func (t *Transcript) countMessage(ctx context.Context, entry *TranscriptEntry) {
	day := entry.CreatedAt.UTC().Format(time.DateOnly)
	_, _ = t.store.Exec(ctx, countMessageQuery, day, entry.Direction, entry.Kind)
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

const (
	statsAuditQuery = `SELECT conversation_id, action, detail, at FROM sikkerchat_audit
		WHERE action IN ('create', 'join', 'close') AND at>=$1 ORDER BY seq`
	statsCountsQuery = `SELECT direction, kind, SUM(count) FROM sikkerchat_stats_daily WHERE day>=$1 GROUP BY direction, kind`
)

// Statistics computes Stats for the last `days` days from the audit trail
// (which outlives purges) and the daily counts.
func (sc *Connector) Statistics(ctx context.Context, days int) (*Stats, error) {
	if days < 1 || days > 3660 {
		return nil, fmt.Errorf("days must be between 1 and 3660")
	}
	since := time.Now().Add(-time.Duration(days) * 24 * time.Hour)
	st := &Stats{Days: days, Messages: map[string]int{}, Files: map[string]int{}}
	rows, err := sc.Store.Query(ctx, statsAuditQuery, since.UnixMilli())
	if err != nil {
		return nil, err
	}
	created := map[string]int64{}
	opened := map[string]bool{}
	var toOpen, toClose []float64
	for rows.Next() {
		var conv, action, detail string
		var at int64
		if err = rows.Scan(&conv, &action, &detail, &at); err != nil {
			rows.Close()
			return nil, err
		}
		switch action {
		case AuditCreate:
			st.Created++
			created[conv] = at
		case AuditJoin:
			if !opened[conv] {
				opened[conv] = true
				st.Opened++
				if c, ok := created[conv]; ok {
					toOpen = append(toOpen, float64(at-c)/1000)
				}
			}
		case AuditClose:
			if detail == CloseInviteExpired {
				st.Expired++
			} else {
				st.Closed++
			}
			if c, ok := created[conv]; ok {
				toClose = append(toClose, float64(at-c)/1000)
			}
		}
	}
	rows.Close()
	st.MedianSecondsToOpen, st.MedianSecondsToClose = median(toOpen), median(toClose)
	rows, err = sc.Store.Query(ctx, statsCountsQuery, since.UTC().Format(time.DateOnly))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var dir, kind string
		var n int
		if err = rows.Scan(&dir, &kind, &n); err != nil {
			return nil, err
		}
		if kind == "file" {
			st.Files[dir] += n
		} else {
			st.Messages[dir] += n
		}
	}
	return st, rows.Err()
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
