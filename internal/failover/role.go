// Package failover lets several sikkerchat processes share one PostgreSQL
// database with exactly one of them active: the active holds a session-level
// advisory lock and the newest term of the sikkerchat_leader row; the others
// wait as standbys, bind no service port, and take over when the active's
// database session ends. On SQLite a lock file keeps a second process out.
// docs/operations.md says how to run it; docs/research/failover.md has the
// sources for every choice.
package failover

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
)

// RolePath is the health endpoint a load balancer routes by: 200 on the
// active process, 503 on a standby.
const RolePath = "/_sikkerchat/role"

// Role is what this process is, for the role endpoint.
type Role struct {
	instance string
	term     atomic.Int64 // 0 while standby
}

// NewRole starts as a standby.
func NewRole(instance string) *Role {
	return &Role{instance: instance}
}

// SetActive marks the process active in the given term.
func (r *Role) SetActive(term int64) { r.term.Store(term) }

// Active says whether the process is the active one.
func (r *Role) Active() bool { return r.term.Load() > 0 }

type roleAnswer struct {
	Role     string `json:"role"`
	Term     int64  `json:"term,omitempty"`
	Instance string `json:"instance"`
}

// ServeHTTP answers GET/HEAD RolePath. It says "active" as soon as the lock
// is held, before bridgev2 starts: the homeserver's appservice ping during
// start-up reaches this process through the load balancer.
func (r *Role) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if req.URL.Path != RolePath {
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	answer := roleAnswer{Role: "standby", Instance: r.instance}
	status := http.StatusServiceUnavailable
	if term := r.term.Load(); term > 0 {
		answer = roleAnswer{Role: "active", Term: term, Instance: r.instance}
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if req.Method == http.MethodGet {
		_ = json.NewEncoder(w).Encode(answer)
	}
}
