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
