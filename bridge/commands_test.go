package bridge

import (
	"reflect"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
	"maunium.net/go/mautrix/bridgev2"
	"maunium.net/go/mautrix/bridgev2/commands"
)

// Every command bridgev2 brings answers "unknown command": none of them can
// go around close, retention or the audit trail, even for an admin.
func TestBridgeBuiltinsAreUnknownCommands(t *testing.T) {
	proc := commands.NewProcessor(&bridgev2.Bridge{}).(*commands.Processor)
	builtins := registeredCommands(proc)
	for _, dangerous := range []string{"delete-portal", "delete-all-portals", "sudo", "doin", "debug-reset-network",
		"debug-account-data", "debug-register-push", "filter", "set-management-room", "id", "cancel", "logout"} {
		require.Contains(t, builtins, dangerous, "the processor was read")
	}
	oc := registerCommands(&Connector{}, proc)
	handlers := reflect.ValueOf(proc).Elem().FieldByName("handlers")
	ours := 0
	for _, key := range handlers.MapKeys() {
		name := key.String()
		handler := handlers.MapIndex(key).Elem().Pointer() // CommandHandler → *FullHandler
		if slices.Contains(sikkerchatCommands, name) {
			require.Nil(t, oc.unknown[name], "%s is sikkerchat's own", name)
			ours++
			continue
		} else if name == plainMessageName {
			continue // the gate's own answer to talk in a management room; typed, the name is unknown
		}
		require.NotNil(t, oc.unknown[name], "bridgev2's %q must answer unknown command", name)
		require.Equal(t, reflect.ValueOf(oc.unknown[name]).Pointer(), handler, "bridgev2's %q must answer unknown command", name)
	}
	require.Equal(t, len(sikkerchatCommands), ours)
	// Aliases lead to the replaced handlers too.
	aliases := reflect.ValueOf(proc).Elem().FieldByName("aliases")
	for _, key := range aliases.MapKeys() {
		target := aliases.MapIndex(key).String()
		if !slices.Contains(sikkerchatCommands, target) {
			require.NotNil(t, oc.unknown[target], "alias %q", key.String())
		}
	}
}
