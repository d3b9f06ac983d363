package bridge

import (
	"encoding/base64"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestInviteTokenIsLongRandomAndHashed(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		token, hash, err := NewInviteToken()
		require.NoError(t, err)
		raw, err := base64.RawURLEncoding.DecodeString(token)
		require.NoError(t, err)
		require.Len(t, raw, 32, "tokens carry 256 bits")
		require.False(t, seen[token], "tokens must not repeat")
		seen[token] = true
		require.Equal(t, HashInviteToken(token), hash)
		require.NotContains(t, string(hash), token)
		require.NoError(t, ParseInviteToken(token))
	}
}

func TestParseInviteTokenRejectsMalformed(t *testing.T) {
	for _, bad := range []string{"", "abc", "!!!!", base64.RawURLEncoding.EncodeToString(make([]byte, 31)),
		base64.RawURLEncoding.EncodeToString(make([]byte, 33)), base64.StdEncoding.EncodeToString(make([]byte, 32))} {
		require.Error(t, ParseInviteToken(bad), bad)
	}
}

func TestCodeWordShapeAndNormalisation(t *testing.T) {
	for range 200 {
		code, err := NewCodeWord()
		require.NoError(t, err)
		require.Regexp(t, `^[a-z]+ [1-9][0-9]$`, code)
	}
	require.Equal(t, "tiger47", NormalizeCode("  Tiger-47 "))
	require.Equal(t, NormalizeCode("tiger 47"), NormalizeCode("TIGER.47"))
	require.Equal(t, "", NormalizeCode(" - "))
}

func TestCodeCheckIsBoundToToken(t *testing.T) {
	token, _, err := NewInviteToken()
	require.NoError(t, err)
	other, _, err := NewInviteToken()
	require.NoError(t, err)
	mac := CodeMAC(token, "tiger 47")
	require.True(t, CheckCode(token, "Tiger-47", mac))
	require.False(t, CheckCode(token, "tiger 48", mac))
	require.False(t, CheckCode(other, "tiger 47", mac), "the same code with another token must fail")
	require.False(t, CheckCode(token, "", mac))
}

func TestCodeWordsAreDistinctAndTypable(t *testing.T) {
	seen := map[string]bool{}
	for _, w := range codeWords {
		require.Regexp(t, `^[a-z]{2,9}$`, w)
		require.False(t, seen[w], "duplicate code word %q", w)
		seen[w] = true
	}
	require.GreaterOrEqual(t, len(codeWords), 64)
}
