package bridge

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Officers and the lifecycle loop write to the audit trail at the same
// time; the chain stays one unbroken line without gaps or forks.
func TestConcurrentAuditWritesKeepOneUnbrokenChain(t *testing.T) {
	sc := infConnector(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for writer := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				errs <- sc.Audit.Append(ctx, fmt.Sprintf("@officer%d:example.org", writer), AuditHold, fmt.Sprintf("c%d", writer), fmt.Sprintf("n%d", i))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.NoError(t, sc.Audit.Verify(ctx))
	rows, err := sc.DB.Audit.All(ctx)
	require.NoError(t, err)
	require.Len(t, rows, 40)
	require.Equal(t, make([]byte, 32), rows[0].PrevHash, "the chain starts from zeros")
	for i, r := range rows {
		require.Equal(t, int64(i+1), r.Seq)
	}
	// Each writer's rows are in its own order.
	for writer := range 4 {
		list, err := sc.Audit.ForConversation(ctx, fmt.Sprintf("c%d", writer))
		require.NoError(t, err)
		require.Len(t, list, 10)
		for i, r := range list {
			require.Equal(t, fmt.Sprintf("n%d", i), r.Detail)
		}
	}
}

// A row's hash covers every field and where one field ends, so no change
// (not even moving characters from one field to the next) keeps it.
func TestAuditHashCoversEveryFieldAndItsBoundaries(t *testing.T) {
	base := AuditRow{Seq: 3, At: time.UnixMilli(1_700_000_000_000), Actor: "@kari:politiet.no", Action: AuditClose,
		ConversationID: "c1", Detail: "officer", PrevHash: bytes.Repeat([]byte{1}, 32)}
	baseHash := hashOf(&base)
	for name, change := range map[string]func(r *AuditRow){
		"seq":          func(r *AuditRow) { r.Seq = 4 },
		"time":         func(r *AuditRow) { r.At = r.At.Add(time.Millisecond) },
		"actor":        func(r *AuditRow) { r.Actor = "@ola:politiet.no" },
		"action":       func(r *AuditRow) { r.Action = AuditHold },
		"conversation": func(r *AuditRow) { r.ConversationID = "c2" },
		"detail":       func(r *AuditRow) { r.Detail = "idle" },
		"previous":     func(r *AuditRow) { r.PrevHash = bytes.Repeat([]byte{2}, 32) },
		"boundary": func(r *AuditRow) {
			r.Actor, r.Action = "@kari:politiet.noclo", "se"
		},
		"detail into conversation": func(r *AuditRow) { r.ConversationID, r.Detail = "c1officer", "" },
	} {
		row := base
		change(&row)
		require.NotEqual(t, baseHash, hashOf(&row), name)
	}
	same := base
	require.Equal(t, baseHash, hashOf(&same), "the hash depends on the fields only")
}

// An empty trail is a whole chain; a row added with a made-up hash at the
// end is caught like a changed one.
func TestAuditVerifyCatchesAForgedLastRow(t *testing.T) {
	sc := infConnector(t)
	ctx := context.Background()
	require.NoError(t, sc.Audit.Verify(ctx))
	require.NoError(t, sc.Audit.Append(ctx, "@kari:politiet.no", AuditCreate, "c1", ""))
	_, last, err := sc.DB.Audit.Last(ctx)
	require.NoError(t, err)
	forged := &AuditRow{Seq: 2, At: time.Now(), Actor: "@kari:politiet.no", Action: AuditUnhold, ConversationID: "c1", PrevHash: last, Hash: bytes.Repeat([]byte{9}, 32)}
	require.NoError(t, sc.DB.Audit.Insert(ctx, forged))
	require.ErrorContains(t, sc.Audit.Verify(ctx), "audit row 2 was changed")
}

// infLifecycle writes a lifecycle row at a given time, as the bridge did then.
func infLifecycle(t *testing.T, sc *Connector, seq int64, at time.Time, action, conv, detail string) {
	t.Helper()
	require.NoError(t, sc.DB.Audit.Insert(context.Background(), &AuditRow{Seq: seq, At: at, Actor: "system", Action: action,
		ConversationID: conv, Detail: detail, PrevHash: []byte{}, Hash: []byte{}}))
}

// The unit lead's statistics: conversations created, opened (once, however
// often the guest reloads), closed and expired in the period, with median
// times from creation; what happened before the period is not counted, nor
// is a conversation created before it in the medians.
func TestStatisticsCountThePeriodAndTakeMedians(t *testing.T) {
	sc := infConnector(t)
	ctx := context.Background()
	now := time.Now()
	t0 := now.Add(-2 * time.Hour)
	old := now.AddDate(0, 0, -40)
	rows := []struct {
		at           time.Time
		action, conv string
		detail       string
	}{
		{old, AuditCreate, "c-old", ""},
		{old.Add(5 * time.Second), AuditJoin, "c-old", ""},
		{t0, AuditCreate, "c1", ""},
		{t0, AuditCreate, "c2", ""},
		{t0, AuditCreate, "c3", ""},
		{t0.Add(10 * time.Second), AuditJoin, "c1", ""},
		{t0.Add(20 * time.Second), AuditJoin, "c1", ""}, // a reload
		{t0.Add(30 * time.Second), AuditJoin, "c2", ""},
		{t0.Add(50 * time.Second), AuditClose, "c3", CloseInviteExpired},
		{t0.Add(100 * time.Second), AuditClose, "c1", CloseByOfficer},
		{t0.Add(200 * time.Second), AuditClose, "c2", CloseIdle},
		{t0.Add(300 * time.Second), AuditClose, "c-old", CloseByOfficer},
		{t0.Add(400 * time.Second), AuditExport, "c1", "sha256 x"},
	}
	for i, r := range rows {
		infLifecycle(t, sc, int64(i+1), r.at, r.action, r.conv, r.detail)
	}
	st, err := Statistics(ctx, sc.DB, 30)
	require.NoError(t, err)
	require.Equal(t, 30, st.Days)
	require.Equal(t, 3, st.Created)
	require.Equal(t, 2, st.Opened)
	require.Equal(t, 3, st.Closed, "c1, c2 and the old conversation closed in the period")
	require.Equal(t, 1, st.Expired)
	require.NotNil(t, st.MedianSecondsToOpen)
	require.InDelta(t, 20.0, *st.MedianSecondsToOpen, 0.001, "median of 10 s and 30 s")
	require.NotNil(t, st.MedianSecondsToClose)
	require.InDelta(t, 100.0, *st.MedianSecondsToClose, 0.001, "median of 50, 100 and 200 s")

	st, err = Statistics(ctx, sc.DB, 60)
	require.NoError(t, err)
	require.Equal(t, 4, st.Created)
	require.Equal(t, 3, st.Opened)
	require.InDelta(t, 10.0, *st.MedianSecondsToOpen, 0.001, "median of 5, 10 and 30 s")
}

// Without any conversation in the period there is no median, not a zero
// that would read as "answered at once".
func TestStatisticsWithoutConversationsHaveNoMedians(t *testing.T) {
	sc := infConnector(t)
	st, err := Statistics(context.Background(), sc.DB, 1)
	require.NoError(t, err)
	require.Nil(t, st.MedianSecondsToOpen)
	require.Nil(t, st.MedianSecondsToClose)
	require.Empty(t, st.Messages)
	require.Empty(t, st.Files)
	_, err = Statistics(context.Background(), sc.DB, 3660)
	require.NoError(t, err, "ten years is the longest period")
}

// Message counts are per direction, texts and files apart, for the days in
// the period.
func TestStatisticsCountMessagesAndFilesByDirection(t *testing.T) {
	sc := infConnector(t)
	ctx := context.Background()
	now := time.Now()
	for _, c := range []struct {
		at   time.Time
		dir  Direction
		kind string
	}{
		{now, FromGuest, "text"}, {now, FromGuest, "text"}, {now, ToGuest, "text"},
		{now, FromGuest, "file"}, {now, ToGuest, "file"}, {now, ToGuest, "file"},
		{now.AddDate(0, 0, -20), FromGuest, "text"},
	} {
		require.NoError(t, sc.DB.Stats.CountMessage(ctx, c.at, c.dir, c.kind))
	}
	st, err := Statistics(ctx, sc.DB, 7)
	require.NoError(t, err)
	require.Equal(t, map[string]int{"from_guest": 2, "to_guest": 1}, st.Messages)
	require.Equal(t, map[string]int{"from_guest": 1, "to_guest": 2}, st.Files)
	st, err = Statistics(ctx, sc.DB, 30)
	require.NoError(t, err)
	require.Equal(t, 3, st.Messages["from_guest"])
}
