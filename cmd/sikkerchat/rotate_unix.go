//go:build unix

package main

import (
	"fmt"
	"os"
	"syscall"
)

// checkKeyDirOwner refuses to re-wrap keys as another user than the one that
// owns key_dir: files rewritten by root (mode 0600) would be unreadable to
// the bridge.
func checkKeyDirOwner(dir string) error {
	info, err := os.Stat(dir)
	if err != nil {
		return nil // the rotation itself reports a missing folder
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	if uid := os.Geteuid(); uint32(uid) != st.Uid {
		return fmt.Errorf("%s belongs to uid %d but this runs as uid %d: run it as the bridge's user "+
			"(e.g. sudo -u sikkerchat ...), or the bridge could not read the rewritten key files", dir, st.Uid, uid)
	}
	return nil
}
