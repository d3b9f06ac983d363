// Package matrixtest is a recording double of the bridge's Matrix side
// (bridge.MatrixSide), for bridge and guest-listener tests that run without a
// homeserver. It answers as a homeserver would: a repeated transaction ID
// gets the event of the first send, and the room can be searched for it.
package matrixtest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"maunium.net/go/mautrix"
	"maunium.net/go/mautrix/event"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/appservice"
	"github.com/sikkerchat/sikkerchat/bridge"
)

var _ bridge.MatrixSide = (*Fake)(nil)

// Fake records what the guest side asked of the room. Lock it to read the
// recorded fields while the bridge may still be writing them.
type Fake struct {
	sync.Mutex
	Sent    []string
	TxnIDs  map[string]id.EventID
	Files   []bridge.FileInfo
	Notices []string
	States  []string
	Typing  []bool
	Reads   []id.EventID
	Exports [][]byte
	Invited []id.UserID
	Forgot  []string
	Removed []id.UserID
	// Members is who GuardRoom finds in every room.
	Members map[id.UserID]event.Membership
	// Guarded counts GuardRoom calls.
	Guarded int
	// Failing makes every send fail as an unreachable homeserver would.
	Failing bool
	// Refuse makes the homeserver refuse this text for good (e.g. too large).
	Refuse string
	// LoseAnswers: this many sends reach the room but their answer is lost.
	LoseAnswers int
	// ForgetTxnIDs: the homeserver keeps no transaction IDs (as Dendrite, whose
	// cache misses requests whose client went away mid-request).
	ForgetTxnIDs bool
	// Stall holds typing calls until it is closed.
	Stall chan struct{}
	// OnSend, when set, is called with each text as its send reaches the
	// homeserver (the benchmarks time the bridge's share with it).
	OnSend func(text string)
}

func (f *Fake) SendGuestText(ctx context.Context, conv *bridge.Conversation, txnID, text string) (id.EventID, error) {
	if f.OnSend != nil {
		f.OnSend(text)
	}
	f.Lock()
	defer f.Unlock()
	if f.Failing {
		return "", fmt.Errorf("homeserver down")
	}
	if f.Refuse != "" && text == f.Refuse {
		return "", mautrix.HTTPError{Response: &http.Response{StatusCode: http.StatusRequestEntityTooLarge}}
	}
	if f.TxnIDs == nil {
		f.TxnIDs = map[string]id.EventID{}
	}
	if evt, ok := f.TxnIDs[txnID]; ok && !f.ForgetTxnIDs {
		return evt, nil // a homeserver answers a repeated transaction with the same event
	}
	evt := id.EventID(fmt.Sprintf("$event%d", len(f.Sent)+1))
	f.TxnIDs[txnID] = evt
	f.Sent = append(f.Sent, text)
	if f.LoseAnswers > 0 {
		f.LoseAnswers--
		return "", fmt.Errorf("connection reset by peer")
	}
	return evt, nil
}

func (f *Fake) SendGuestFile(ctx context.Context, conv *bridge.Conversation, txnID string, info bridge.FileInfo, data []byte) (id.EventID, error) {
	evt, err := f.SendGuestText(ctx, conv, txnID, "file:"+info.Name+":"+info.SHA256)
	if err == nil {
		f.Lock()
		f.Files = append(f.Files, info)
		f.Unlock()
	}
	return evt, err
}

// FindSent answers as a homeserver's room would: the event an earlier send made.
func (f *Fake) FindSent(ctx context.Context, conv *bridge.Conversation, txnID string) (id.EventID, error) {
	f.Lock()
	defer f.Unlock()
	if f.Failing {
		return "", fmt.Errorf("homeserver down")
	}
	return f.TxnIDs[txnID], nil
}

func (f *Fake) Notice(ctx context.Context, conv *bridge.Conversation, markdown string) {
	f.Lock()
	defer f.Unlock()
	f.Notices = append(f.Notices, markdown)
}

func (f *Fake) CloseRoom(ctx context.Context, conv *bridge.Conversation, state *appservice.ConversationState, notice string) {
	f.Lock()
	defer f.Unlock()
	f.States = append(f.States, state.Status)
	f.Notices = append(f.Notices, notice)
}

func (f *Fake) SendExport(ctx context.Context, conv *bridge.Conversation, name string, data []byte) error {
	f.Lock()
	defer f.Unlock()
	f.Exports = append(f.Exports, data)
	return nil
}

func (f *Fake) ForgetRoom(ctx context.Context, conv *bridge.Conversation) {
	f.Lock()
	defer f.Unlock()
	f.Forgot = append(f.Forgot, conv.ID)
}

func (f *Fake) InviteOfficer(ctx context.Context, conv *bridge.Conversation, officer id.UserID) error {
	f.Lock()
	defer f.Unlock()
	f.Invited = append(f.Invited, officer)
	return nil
}

func (f *Fake) UpdateState(ctx context.Context, conv *bridge.Conversation, state *appservice.ConversationState) {
	f.Lock()
	defer f.Unlock()
	f.States = append(f.States, state.Status)
}

func (f *Fake) GuestTyping(ctx context.Context, conv *bridge.Conversation, typing bool, timeout time.Duration) {
	f.Lock()
	stall := f.Stall
	f.Unlock()
	if stall != nil {
		<-stall // a homeserver that does not answer
	}
	f.Lock()
	defer f.Unlock()
	f.Typing = append(f.Typing, typing)
}

func (f *Fake) GuestRead(ctx context.Context, conv *bridge.Conversation, eventID id.EventID) error {
	f.Lock()
	defer f.Unlock()
	f.Reads = append(f.Reads, eventID)
	return nil
}

// Bot is the bridge bot of the double; a conversation's guest is
// @sikkerchat_<ghost ID>.
const Bot = id.UserID("@sikkerchatbot:example.org")

func (f *Fake) BridgeMembers(conv *bridge.Conversation) (bot, guest id.UserID) {
	return Bot, id.UserID("@sikkerchat_" + conv.GhostID + ":example.org")
}

func (f *Fake) RemoveMember(ctx context.Context, conv *bridge.Conversation, user id.UserID, reason string) error {
	f.Lock()
	defer f.Unlock()
	if f.Failing {
		return fmt.Errorf("homeserver down")
	}
	f.Removed = append(f.Removed, user)
	return nil
}

func (f *Fake) GuardRoom(ctx context.Context, conv *bridge.Conversation) (map[id.UserID]event.Membership, error) {
	f.Lock()
	defer f.Unlock()
	f.Guarded++
	return f.Members, nil
}

// Snapshot copies what was sent and noticed so far.
func (f *Fake) Snapshot() (sent, notices []string) {
	f.Lock()
	defer f.Unlock()
	return append([]string(nil), f.Sent...), append([]string(nil), f.Notices...)
}

// Reset forgets everything recorded (a shared fuzz server between inputs).
func (f *Fake) Reset() {
	f.Lock()
	defer f.Unlock()
	f.Sent, f.TxnIDs, f.Files, f.Notices, f.States = nil, nil, nil, nil, nil
}
