package scdb

import (
	"context"
	"time"

	"go.mau.fi/util/dbutil"
)

// StatsQuery is the queries on sikkerchat_stats_daily: anonymous counts per
// day, direction and kind; no identities, no content.
type StatsQuery struct {
	db *dbutil.Database
}

// StatsCount is one direction and kind's count over a period.
type StatsCount struct {
	Direction Direction
	Kind      string
	Count     int
}

const (
	countMessageQuery = `INSERT INTO sikkerchat_stats_daily (day, direction, kind, count) VALUES ($1, $2, $3, 1)
		ON CONFLICT (day, direction, kind) DO UPDATE SET count=sikkerchat_stats_daily.count+1`
	statsCountsQuery = `SELECT direction, kind, SUM(count) FROM sikkerchat_stats_daily WHERE day>=$1 GROUP BY direction, kind`
)

// CountMessage adds one to a day's count.
func (sq *StatsQuery) CountMessage(ctx context.Context, at time.Time, dir Direction, kind string) error {
	_, err := sq.db.Exec(ctx, countMessageQuery, at.UTC().Format(time.DateOnly), dir, kind)
	return err
}

// CountsSince sums the counts from a day on.
func (sq *StatsQuery) CountsSince(ctx context.Context, since time.Time) ([]StatsCount, error) {
	return dbutil.ConvertRowFn[StatsCount](func(row dbutil.Scannable) (c StatsCount, err error) {
		err = row.Scan(&c.Direction, &c.Kind, &c.Count)
		return
	}).NewRowIter(sq.db.Query(ctx, statsCountsQuery, since.UTC().Format(time.DateOnly))).AsList()
}
