package bridge_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/id"

	"github.com/sikkerchat/sikkerchat/bridge"
	"github.com/sikkerchat/sikkerchat/internal/matrixtest"
	"github.com/sikkerchat/sikkerchat/internal/testdb"
)

// testBridge is a connector over a fresh database and the recording Matrix
// double: the whole guest side, without a homeserver.
type testBridge struct {
	*bridge.Connector
	t      testing.TB
	matrix *matrixtest.Fake
	ctx    context.Context
	// sqlitePath is the database file ("" on PostgreSQL).
	sqlitePath string
}

func newTestConfig(t testing.TB) bridge.Config {
	t.Helper()
	var cfg bridge.Config
	require.NoError(t, yaml.Unmarshal([]byte(bridge.ExampleConfig), &cfg))
	cfg.MasterKey = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	cfg.KeyDir = t.TempDir()
	return cfg
}

func newTestBridge(t testing.TB, cfg bridge.Config) *testBridge {
	t.Helper()
	raw, path := testdb.New(t)
	fm := &matrixtest.Fake{}
	ctx := zerolog.Nop().WithContext(context.Background())
	sc, err := bridge.NewDetached(ctx, cfg, raw, fm)
	require.NoError(t, err)
	t.Cleanup(func() { require.True(t, sc.WaitBackground(time.Minute), "background work did not end") })
	return &testBridge{Connector: sc, t: t, matrix: fm, ctx: ctx, sqlitePath: path}
}

type testInvite struct {
	conv  *bridge.Conversation
	token string
	code  string
}

// newInvite stores a conversation with a fresh invite, as `!sc new` does.
func (tb *testBridge) newInvite(ttl time.Duration) testInvite {
	tb.t.Helper()
	now := time.UnixMilli(time.Now().UnixMilli())
	conv := &bridge.Conversation{
		ID: fmt.Sprintf("conv%d", time.Now().UnixNano()), GhostID: "ghost", RoomID: id.RoomID(fmt.Sprintf("!room%d:example.org", time.Now().UnixNano())),
		Status: bridge.StatusCreated, CreatedBy: "@officer:example.org", CreatedAt: now, InviteExpiresAt: now.Add(ttl),
	}
	token, hash, err := bridge.NewInviteToken()
	require.NoError(tb.t, err)
	code, err := bridge.NewCodeWord()
	require.NoError(tb.t, err)
	require.NoError(tb.t, tb.Transcript.CreateKey(conv.ID))
	inv := &bridge.Invite{TokenHash: hash, ConversationID: conv.ID, CodeMAC: bridge.CodeMAC(token, code), CreatedAt: now, ExpiresAt: now.Add(ttl)}
	require.NoError(tb.t, tb.DB.Conversation.Insert(tb.ctx, conv, inv))
	return testInvite{conv: conv, token: token, code: code}
}

// auditActions lists a conversation's audit actions in order.
func (tb *testBridge) auditActions(conversationID string) []string {
	tb.t.Helper()
	rows, err := tb.Audit.ForConversation(tb.ctx, conversationID)
	require.NoError(tb.t, err)
	var out []string
	for _, r := range rows {
		out = append(out, r.Action)
	}
	return out
}

func countOf(list []string, what string) (n int) {
	for _, s := range list {
		if s == what {
			n++
		}
	}
	return n
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

// join opens a guest session for the invite, as the page does.
func (tb *testBridge) join(inv testInvite) string {
	tb.t.Helper()
	session, _, err := tb.Guests.Join(tb.ctx, inv.token, inv.code)
	require.NoError(tb.t, err)
	return session
}

// conv reads a conversation as stored now.
func (tb *testBridge) conv(conversationID string) *bridge.Conversation {
	tb.t.Helper()
	conv, err := tb.DB.Conversation.Get(tb.ctx, conversationID)
	require.NoError(tb.t, err)
	return conv
}

// officerFile stores a file as if an officer had sent it in the room.
func (tb *testBridge) officerFile(conversationID, name string, data []byte) string {
	tb.t.Helper()
	info, err := tb.Officers.StoreFile(tb.ctx, conversationID, name, data)
	require.NoError(tb.t, err)
	entry := &bridge.TranscriptEntry{Direction: bridge.ToGuest, MatrixEventID: id.EventID("$" + info.ID), CreatedAt: time.Now(), Kind: "file", Extra: info.Extras()}
	_, err = tb.Transcript.Append(tb.ctx, conversationID, entry)
	require.NoError(tb.t, err)
	return info.ID
}

// A minimal PDF, real enough for type detection.
var pdfBytes = []byte("%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n")
