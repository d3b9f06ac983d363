//go:build !sikkerchat_testhooks

package web

const testHooksCompiled = false

// Production builds have no test hooks.
func registerTestHooks(*Server) {}
