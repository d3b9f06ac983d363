package main

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// runMainStatus runs main() in a child process and returns its output and exit status.
func runMainStatus(t *testing.T, dir string, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "SIKKERCHAT_RUN_MAIN=1"), env...)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return string(out), exitErr.ExitCode()
	}
	require.NoError(t, err, string(out))
	return string(out), 0
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func replaceOnce(t *testing.T, s, old, new string) string {
	t.Helper()
	require.Equal(t, 1, strings.Count(s, old), old)
	return strings.Replace(s, old, new, 1)
}

func TestRotateMasterKeyCommand(t *testing.T) {
	dir := t.TempDir()
	keyDir := filepath.Join(dir, "keys")
	oldKey := bytes.Repeat([]byte{0x11}, 32)
	oldKeyText := base64.StdEncoding.EncodeToString(oldKey)
	guestListen := "127.0.0.1:" + strconv.Itoa(freePort(t))

	runMain(t, dir, "-e", "-c", "config.yaml")
	cfg, err := os.ReadFile(filepath.Join(dir, "config.yaml"))
	require.NoError(t, err)
	text := replaceOnce(t, string(cfg), "master_key: generate", "master_key: "+oldKeyText)
	text = replaceOnce(t, text, "key_dir: ./keys", "key_dir: "+keyDir)
	text = replaceOnce(t, text, "listen: 127.0.0.1:29346", "listen: "+guestListen)
	text = replaceOnce(t, text, "port: 29345", "port: "+strconv.Itoa(freePort(t)))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(text), 0o600))

	keys, err := bridge.NewKeyStore(keyDir)
	require.NoError(t, err)
	for _, id := range []string{"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"} {
		require.NoError(t, bridge.NewTranscript(nil, keys, oldKey).CreateKey(id))
	}
	before := dirContents(t, keyDir)

	// Misuse: no new key, or the key as an argument.
	out, status := runMainStatus(t, dir, nil, "rotate-master-key", "-c", "config.yaml")
	require.Equal(t, 2, status, out)
	require.Contains(t, out, "no new key")
	out, status = runMainStatus(t, dir, nil, "rotate-master-key", "-c", "config.yaml", oldKeyText)
	require.Equal(t, 2, status, out)
	require.NotContains(t, out, oldKeyText)

	// The bridge is "running": its guest listener answers.
	ln, err := net.Listen("tcp", guestListen)
	require.NoError(t, err)
	out, status = runMainStatus(t, dir, nil, "rotate-master-key", "-c", "config.yaml", "--new-key-file", "new.key", "--generate")
	require.NoError(t, ln.Close())
	require.Equal(t, 1, status, out)
	require.Contains(t, out, "stop the bridge first")
	require.NoFileExists(t, filepath.Join(dir, "new.key"))
	require.Equal(t, before, dirContents(t, keyDir))

	// A new key file that others can read is refused.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "open.key"), []byte(base64.StdEncoding.EncodeToString(make([]byte, 32))), 0o644))
	out, status = runMainStatus(t, dir, nil, "rotate-master-key", "-c", "config.yaml", "--new-key-file", "open.key")
	require.Equal(t, 1, status, out)
	require.Contains(t, out, "chmod 600")

	// Generate a new key into a file and rotate.
	out, status = runMainStatus(t, dir, nil, "rotate-master-key", "-c", "config.yaml", "--new-key-file", "new.key", "--generate")
	require.Equal(t, 0, status, out)
	require.Contains(t, out, "Re-wrapped 3 conversation keys with the new master key; 0 already were")
	info, err := os.Stat(filepath.Join(dir, "new.key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	newKeyText, err := os.ReadFile(filepath.Join(dir, "new.key"))
	require.NoError(t, err)
	newKey, err := bridge.ParseMasterKey(string(newKeyText))
	require.NoError(t, err)
	require.NotContains(t, out, strings.TrimSpace(string(newKeyText)), "the new key is never printed")
	require.NotContains(t, out, oldKeyText, "the old key is never printed")

	// --generate never overwrites a key file.
	out, status = runMainStatus(t, dir, nil, "rotate-master-key", "-c", "config.yaml", "--new-key-file", "new.key", "--generate")
	require.Equal(t, 1, status, out)
	require.Contains(t, out, "file exists")

	// Running again with the same key (from the environment this time) finds it done.
	out, status = runMainStatus(t, dir, []string{newMasterKeyEnv + "=" + strings.TrimSpace(string(newKeyText))},
		"rotate-master-key", "-c", "config.yaml")
	require.Equal(t, 0, status, out)
	require.Contains(t, out, "Re-wrapped 0 conversation keys with the new master key; 3 already were")

	// A new key that does not fit what is on disk: refused, nothing changed.
	after := dirContents(t, keyDir)
	other := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0x33}, 32))
	cfgWithNew := strings.Replace(text, "master_key: "+oldKeyText, "master_key: "+other, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfgWithNew), 0o600))
	out, status = runMainStatus(t, dir, []string{newMasterKeyEnv + "=" + oldKeyText}, "rotate-master-key", "-c", "config.yaml")
	require.Equal(t, 1, status, out)
	require.Contains(t, out, "3 of 3 key files open with neither")
	require.Equal(t, after, dirContents(t, keyDir))

	// The files are really under the new key: it rotates on to a third one.
	res, err := bridge.RotateMasterKey(keyDir, newKey, bytes.Repeat([]byte{0x44}, 32))
	require.NoError(t, err)
	require.Equal(t, 3, res.Rotated)
}

func dirContents(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	out := map[string]string{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		out[e.Name()] = string(data)
	}
	return out
}
