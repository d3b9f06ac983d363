package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
	"maunium.net/go/mautrix/bridgev2/bridgeconfig"
	"maunium.net/go/mautrix/bridgev2/matrix/mxmain"

	"github.com/sikkerchat/sikkerchat/bridge"
)

// newMasterKeyEnv holds the new master key when it is not read from a file.
// A command-line argument would show in ps and in the shell history.
const newMasterKeyEnv = "SIKKERCHAT_NEW_MASTER_KEY"

const rotateUsage = `usage: sikkerchat rotate-master-key [-c config.yaml] (--new-key-file FILE [--generate] | with $` + newMasterKeyEnv + `)

Re-wraps every conversation key in network.key_dir from the current
network.master_key to a new master key. Stop the bridge first. If the run is
interrupted, run it again with the same new key. Afterwards, put the new key
into network.master_key and start the bridge.

  -c, --config FILE        the bridge's config file (default config.yaml)
  --new-key-file FILE      read the new key (base64) from FILE, which must not be
                           readable by group or others
  --generate               make a new random key and write it to --new-key-file,
                           which must not exist yet
  --skip-running-check     do not check whether the bridge's listeners answer

Or set ` + newMasterKeyEnv + ` to the new key (base64) instead of --new-key-file.
Exit status: 0 done, 1 failed (see the message; nothing is lost), 2 misuse.
`

// rotateMasterKey is `sikkerchat rotate-master-key`. It never prints a key.
func rotateMasterKey(args []string, stdout, stderr io.Writer) int {
	flags := flag.NewFlagSet("rotate-master-key", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	var configPath, newKeyFile string
	var generate, skipRunningCheck bool
	flags.StringVar(&configPath, "c", "config.yaml", "")
	flags.StringVar(&configPath, "config", "config.yaml", "")
	flags.StringVar(&newKeyFile, "new-key-file", "", "")
	flags.BoolVar(&generate, "generate", false, "")
	flags.BoolVar(&skipRunningCheck, "skip-running-check", false, "")
	misuse := func(msg string) int {
		if msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		fmt.Fprint(stderr, rotateUsage)
		return 2
	}
	if err := flags.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, rotateUsage)
		return 0
	} else if err != nil {
		return misuse(err.Error())
	} else if flags.NArg() > 0 {
		// Not echoed: it may well be a key.
		return misuse("unexpected argument: the new key is never given on the command line")
	}
	envKey, envSet := os.LookupEnv(newMasterKeyEnv)
	// The bridge's own env_config_prefix may be SIKKERCHAT_: keep our variable
	// out of the config loading below.
	_ = os.Unsetenv(newMasterKeyEnv)
	switch {
	case envSet && newKeyFile != "":
		return misuse("give the new key either in $" + newMasterKeyEnv + " or with --new-key-file, not both")
	case !envSet && newKeyFile == "":
		return misuse("no new key: set $" + newMasterKeyEnv + " or give --new-key-file")
	case generate && newKeyFile == "":
		return misuse("--generate needs --new-key-file to write the new key to")
	}

	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, format+"\n", a...)
		return 1
	}
	cfg, network, err := loadRotationConfig(configPath)
	if err != nil {
		return fail("Cannot read the config: %v", err)
	}
	oldKey, err := bridge.ParseMasterKey(network.MasterKey)
	if err != nil {
		return fail("network.master_key in %s is not usable: %v", configPath, err)
	}
	keyDir, err := filepath.Abs(network.KeyDir)
	if err != nil || network.KeyDir == "" {
		return fail("network.key_dir in %s is not usable", configPath)
	}
	if err = checkKeyDirOwner(keyDir); err != nil {
		return fail("Refused: %v.", err)
	}
	if !skipRunningCheck {
		if addr := answeringListener(cfg, network); addr != "" {
			return fail("Something answers on %s, where the bridge listens: stop the bridge first "+
				"(or, if that is another program, use --skip-running-check).", addr)
		}
	}

	var newKey []byte
	switch {
	case envSet:
		if newKey, err = bridge.ParseMasterKey(envKey); err != nil {
			return fail("$%s: %v", newMasterKeyEnv, err)
		}
	case generate:
		if newKey, err = writeNewMasterKey(newKeyFile); err != nil {
			return fail("Cannot write the new key: %v", err)
		}
		fmt.Fprintf(stdout, "Wrote a new master key to %s (mode 0600).\n", newKeyFile)
	default:
		if newKey, err = readNewMasterKey(newKeyFile); err != nil {
			return fail("Cannot use the new key: %v", err)
		}
	}

	fmt.Fprintf(stdout, "Key folder: %s\n", keyDir)
	res, err := bridge.RotateMasterKey(keyDir, oldKey, newKey)
	again := "the same command"
	if generate {
		again = "the same command without --generate (the new key is in " + newKeyFile + ")"
	}
	var unreadable *bridge.UnreadableKeysError
	if errors.As(err, &unreadable) {
		if generate {
			fmt.Fprintf(stderr, "The generated key stays in %s; to use it, run again without --generate.\n", newKeyFile)
		}
		return fail("Refused: %v.\nIs network.master_key in %s the key the bridge runs with, and, after an interrupted run, "+
			"is the new key the one that run used? See docs/operations.md.", err, configPath)
	}
	fmt.Fprintf(stdout, "Re-wrapped %d conversation keys with the new master key; %d already were; "+
		"removed %d leftover temporary files; left %d other entries alone.\n",
		res.Rotated, res.AlreadyNew, res.StaleTemp, res.Ignored)
	if err != nil {
		return fail("Rotation stopped: %v\nNothing is lost: fix the cause and run %s. "+
			"Do not start the bridge until it has finished.", err, again)
	}
	fmt.Fprintf(stdout, "Done. Now put the new master key into network.master_key in %s, then start the bridge.\n"+
		"Until then the bridge cannot open any conversation's guest-side history.\n", configPath)
	return 0
}

// loadRotationConfig reads the config as the bridge would, environment
// overrides included, but never writes it back (the bridge's own loader
// would, and would replace master_key: generate with a fresh key).
func loadRotationConfig(path string) (*bridgeconfig.Config, *bridge.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var cfg bridgeconfig.Config
	if err = yaml.Unmarshal(data, &cfg); err != nil {
		return nil, nil, err
	}
	var network bridge.Config
	if err = cfg.Network.Decode(&network); err != nil {
		return nil, nil, fmt.Errorf("network section: %w", err)
	}
	if cfg.EnvConfigPrefix != "" {
		if err = mxmain.UpdateConfigFromEnv(&cfg, &network, cfg.EnvConfigPrefix); err != nil {
			return nil, nil, fmt.Errorf("environment variables: %w", err)
		}
	}
	return &cfg, &network, nil
}

// answeringListener returns the first of the bridge's listeners that accepts
// a connection: the bridge (or something in its place) is running.
func answeringListener(cfg *bridgeconfig.Config, network *bridge.Config) string {
	type target struct{ network, addr string }
	var targets []target
	// An absolute path as hostname is a unix socket (mautrix appservice.HostConfig).
	if host := cfg.AppService.Hostname; strings.HasPrefix(host, "/") {
		targets = append(targets, target{"unix", host})
	} else if cfg.AppService.Port != 0 {
		targets = append(targets, target{"tcp", net.JoinHostPort(host, strconv.Itoa(int(cfg.AppService.Port)))})
	}
	if network.Guest.Listen != "" {
		targets = append(targets, target{"tcp", network.Guest.Listen})
	}
	for _, t := range targets {
		if conn, err := net.DialTimeout(t.network, t.addr, time.Second); err == nil {
			_ = conn.Close()
			return t.addr
		}
	}
	return ""
}

// writeNewMasterKey makes a new key and stores it durably before anything is
// re-wrapped with it: a rotation must never run ahead of its key's only copy.
func writeNewMasterKey(path string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = f.Sync()
	}
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		var dir *os.File
		if dir, err = os.Open(filepath.Dir(path)); err == nil {
			err = dir.Sync()
			_ = dir.Close()
		}
	}
	if err != nil {
		_ = os.Remove(path)
		return nil, err
	}
	return key, nil
}

func readNewMasterKey(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	} else if info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %04o): chmod 600 it first", path, info.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return bridge.ParseMasterKey(string(data))
}
