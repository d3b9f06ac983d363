//go:build !sikkerchat_testhooks

package web

// Production builds have no test hooks.
func registerTestHooks(*Server) {}
