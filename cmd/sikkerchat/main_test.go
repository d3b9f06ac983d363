package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// TestMain lets a test run the real binary's main() in a child process.
func TestMain(m *testing.M) {
	if os.Getenv("SIKKERCHAT_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func runMain(t *testing.T, dir string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "SIKKERCHAT_RUN_MAIN=1")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	return out
}

// The committed config.example.yaml must be exactly what `sikkerchat -e` writes.
func TestExampleConfigMatchesGenerated(t *testing.T) {
	generated := runMain(t, t.TempDir(), "-e", "-c", "-")
	committed, err := os.ReadFile(filepath.Join("..", "..", "config.example.yaml"))
	require.NoError(t, err)
	require.Equal(t, string(committed), string(generated),
		"config.example.yaml drifted; regenerate it with: go run -tags goolm ./cmd/sikkerchat -e -c - > config.example.yaml")
}

// The sample registration has exactly the keys `sikkerchat -g` writes for the
// example config, and placeholders where the real one has fresh tokens.
func TestSampleRegistrationMatchesGenerated(t *testing.T) {
	dir := t.TempDir()
	runMain(t, dir, "-e", "-c", "config.yaml")
	// -g refuses the example domain on purpose; any other domain will do.
	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	require.NoError(t, err)
	cfg = []byte(strings.Replace(string(cfg), "domain: example.com", "domain: example.org", 1))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), cfg, 0o600))
	runMain(t, dir, "-g", "-c", "config.yaml", "-r", "registration.yaml")

	generated := readYAML(t, filepath.Join(dir, "registration.yaml"))
	sample := readYAML(t, filepath.Join("..", "..", "registration.yaml"))
	require.ElementsMatch(t, keys(generated), keys(sample))
	for _, key := range []string{"id", "url", "rate_limited", "receive_ephemeral"} {
		require.Equal(t, generated[key], sample[key], key)
	}
	for _, key := range []string{"as_token", "hs_token", "sender_localpart"} {
		require.Contains(t, sample[key], "generated", "the sample must not carry a real %s", key)
		require.Len(t, generated[key], map[string]int{"as_token": 64, "hs_token": 64, "sender_localpart": 32}[key])
	}
}

func readYAML(t *testing.T, path string) map[string]any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, yaml.Unmarshal(data, &out))
	return out
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestSQLiteOverwritesWhatIsDeleted(t *testing.T) {
	require.Equal(t, "file:sikkerchat.db?_txlock=immediate&_secure_delete=on", secureSQLiteURI("sqlite3-fk-wal", "file:sikkerchat.db?_txlock=immediate"))
	require.Equal(t, "file:x.db?_secure_delete=on", secureSQLiteURI("sqlite3-fk-wal", "file:x.db"))
	require.Equal(t, "file:x.db?_secure_delete=off", secureSQLiteURI("sqlite3-fk-wal", "file:x.db?_secure_delete=off"), "an explicit choice stays")
	require.Equal(t, "postgres://x/y", secureSQLiteURI("postgres", "postgres://x/y"))
}

func TestVerifyExportCommand(t *testing.T) {
	dir := t.TempDir()
	pkg, err := bridge.AssembleExport(&bridge.Conversation{ID: "c1", RoomID: "!r:x"}, "@officer:x",
		[]*bridge.ExportMessage{{EventID: "$1", Sender: "@officer:x", Timestamp: 1, Type: "m.text", Body: "hei", Encrypted: true}}, nil, nil)
	require.NoError(t, err)
	path := filepath.Join(dir, "pakke.zip")
	require.NoError(t, os.WriteFile(path, pkg, 0o600))
	sum := sha256.Sum256(pkg)

	var out, errOut bytes.Buffer
	require.Equal(t, 0, verifyExport([]string{path}, &out, &errOut), errOut.String())
	require.Contains(t, out.String(), "SHA-256 of the package: "+hex.EncodeToString(sum[:]))
	require.Contains(t, out.String(), "OK:")

	// An audit trail without this package's export row: not the bridge's package.
	audit := filepath.Join(dir, "audit.json")
	require.NoError(t, os.WriteFile(audit, []byte(`{"rows":[{"seq":1,"action":"export","detail":"sha256 00"}]}`), 0o600))
	out.Reset()
	require.Equal(t, 1, verifyExport([]string{path, audit}, &out, &errOut))
	require.Contains(t, out.String(), "no export row")

	out.Reset()
	require.Equal(t, 2, verifyExport(nil, &out, &errOut))
	require.Equal(t, 2, verifyExport([]string{filepath.Join(dir, "finnes-ikke.zip")}, &out, &errOut))
}
