package bridge_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/database"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// BenchmarkOfficerToGuestShare times the bridge's part of an officer's
// message on its way to the guest, in process: the inbox row made durable
// (as the appservice transaction does before the homeserver is answered),
// then the handler bridgev2 calls with the decrypted event (sealing, storing,
// the fan-out), until the guest's open stream has the event. Left out:
// Megolm decryption and bridgev2's routing before the handler, and the SSE
// write after it.
//
//	go test -tags goolm -run '^$' -bench OfficerToGuestShare -benchtime 2000x ./bridge/
func BenchmarkOfficerToGuestShare(b *testing.B) {
	tb := newTestBridge(b, newTestConfig(b))
	inv := tb.newInvite(time.Hour)
	tb.Bridge = &bridgev2.Bridge{Log: zerolog.Nop(), Bot: &infBot{}, Matrix: &infRoomMembers{names: map[id.UserID]string{officer: "Kari Nordmann"}}}
	client := &bridge.OfficerClient{Connector: tb.Connector, Login: &bridgev2.UserLogin{UserLogin: &database.UserLogin{ID: "@officer:example.org"}}}
	sub := tb.Hub.Subscribe(inv.conv.ID)
	defer sub.Close()
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		eventID := id.EventID(fmt.Sprintf("$bench-%010d", i))
		start := time.Now()
		if err := tb.DB.Inbox.Keep(tb.ctx, eventID, inv.conv.RoomID, `{}`, start, start.UnixNano()); err != nil {
			b.Fatal(err)
		}
		msg := &bridgev2.MatrixMessage{MatrixEventBase: bridgev2.MatrixEventBase[*event.MessageEventContent]{
			Event:   &event.Event{ID: eventID, Sender: officer, Timestamp: start.UnixMilli(), RoomID: inv.conv.RoomID},
			Content: &event.MessageEventContent{MsgType: event.MsgText, Body: "Hei, dette er politiet."},
			Portal:  portalOf(inv.conv),
		}}
		if _, err := client.HandleMatrixMessage(tb.ctx, msg); err != nil {
			b.Fatal(err)
		}
		for evt := range sub.C {
			if evt.Kind == bridge.GuestEventMessage && evt.Entry.MatrixEventID == eventID {
				break
			}
		}
		times = append(times, time.Since(start))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
}
