package bridge

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"unicode"
)

// Invite tokens are 256 bits from crypto/rand, sent in the link's fragment.
// The database keeps SHA-256(token) to find the invite and HMAC(token, code)
// to check the code word, so neither can be recovered from a copy of it.
const tokenBytes = 32

// codeWords are short bokmål nouns a child can read and type on a phone
// keyboard: no æ/ø/å (some guests have foreign keyboards) and no words that
// look alike.
var codeWords = []string{
	"ball", "banan", "bil", "bok", "bro", "buss", "drage", "eple", "fjell", "fisk",
	"fugl", "gitar", "hest", "hus", "hval", "is", "jakke", "kake", "katt", "kiwi",
	"klokke", "kopp", "lampe", "sykkel", "linjal", "melon", "mus", "ost", "panda", "pingvin",
	"pizza", "planet", "rakett", "regn", "robot", "rose", "sekk", "sirkus", "sjiraff", "sko",
	"sky", "sol", "stjerne", "sukker", "tiger", "tog", "tomat", "trompet", "ugle", "ulv",
	"vaffel", "vind", "zebra", "anker", "kaktus", "appelsin", "delfin", "tromme", "hummer", "iglo",
	"kompass", "lykt", "paraply", "safari",
}

// NewInviteToken returns a fresh token (base64url, no padding) and its hash.
func NewInviteToken() (token string, hash []byte, err error) {
	raw := make([]byte, tokenBytes)
	if _, err = rand.Read(raw); err != nil {
		return "", nil, err
	}
	token = base64.RawURLEncoding.EncodeToString(raw)
	return token, HashInviteToken(token), nil
}

// HashInviteToken is the lookup key of an invite.
func HashInviteToken(token string) []byte {
	sum := sha256.Sum256([]byte("sikkerchat-invite:" + token))
	return sum[:]
}

// NewCodeWord returns a word and two digits, like "tiger 47".
func NewCodeWord() (string, error) {
	w, err := rand.Int(rand.Reader, big.NewInt(int64(len(codeWords))))
	if err != nil {
		return "", err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(90))
	if err != nil {
		return "", err
	}
	return codeWords[w.Int64()] + " " + big.NewInt(n.Int64()+10).String(), nil
}

// NormalizeCode makes what the guest typed comparable with what the officer
// sent: case, spaces, dashes and dots don't matter ("Tiger-47 " == "tiger 47").
func NormalizeCode(code string) string {
	var sb strings.Builder
	for _, r := range strings.ToLower(code) {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			sb.WriteRune(r)
		}
	}
	return sb.String()
}

// CodeMAC binds a code word to its token.
func CodeMAC(token, code string) []byte {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("sikkerchat-code:" + NormalizeCode(code)))
	return mac.Sum(nil)
}

// CheckCode compares in constant time.
func CheckCode(token, code string, stored []byte) bool {
	return hmac.Equal(CodeMAC(token, code), stored)
}

var errBadToken = errors.New("malformed invite token")

// ParseInviteToken checks the shape of a token before any database lookup.
// Only the exact form NewInviteToken writes passes: the decoder alone would
// skip CR and LF and ignore stray low bits, so one token had many spellings.
func ParseInviteToken(token string) error {
	if len(token) != base64.RawURLEncoding.EncodedLen(tokenBytes) {
		return errBadToken
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token)
	if err != nil || len(raw) != tokenBytes {
		return errBadToken
	}
	return nil
}
