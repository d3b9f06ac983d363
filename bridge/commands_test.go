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
	registerCommands(&Connector{}, proc)
	unknown := reflect.ValueOf((&officerCommands{}).cmdUnknown).Pointer()
	handlers := reflect.ValueOf(proc).Elem().FieldByName("handlers")
	ours := 0
	for _, key := range handlers.MapKeys() {
		name := key.String()
		handler := handlers.MapIndex(key).Elem().Elem() // CommandHandler → *FullHandler → FullHandler
		fn := handler.FieldByName("Func").Pointer()
		if slices.Contains(sikkerchatCommands, name) {
			require.NotEqual(t, unknown, fn, "%s is sikkerchat's own", name)
			ours++
			continue
		}
		require.Equal(t, unknown, fn, "bridgev2's %q must answer unknown command", name)
	}
	require.Equal(t, len(sikkerchatCommands), ours)
	// Aliases lead to the replaced handlers too.
	aliases := reflect.ValueOf(proc).Elem().FieldByName("aliases")
	for _, key := range aliases.MapKeys() {
		target := aliases.MapIndex(key).String()
		if !slices.Contains(sikkerchatCommands, target) {
			fn := handlers.MapIndex(reflect.ValueOf(target)).Elem().Elem().FieldByName("Func").Pointer()
			require.Equal(t, unknown, fn, "alias %q", key.String())
		}
	}
}
