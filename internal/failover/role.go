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
	"time"
)

// RolePath is the health endpoint a load balancer routes by: 200 on the
// active process, 503 on a standby.
const RolePath = "/_sikkerchat/role"

// Role is what this process is, for the role endpoint.
type Role struct {
	instance string
	active   atomic.Pointer[activeTerm] // nil while standby
	now      func() time.Time
}

type activeTerm struct {
	term  int64
	since time.Time
	valid func() bool
}

// NewRole starts as a standby.
func NewRole(instance string) *Role {
	return &Role{instance: instance, now: time.Now}
}

// SetActive marks the process active in the given term, taken at since.
// valid (nil: always) says whether the process still holds the term: once it
// says no, the endpoint answers standby, so that neither the load balancer
// nor anyone watching sees a former active as active in the moment before it
// exits.
func (r *Role) SetActive(term int64, since time.Time, valid func() bool) {
	r.active.Store(&activeTerm{term: term, since: since, valid: valid})
}

// Active says whether the process is the active one.
func (r *Role) Active() bool {
	a := r.active.Load()
	return a != nil && (a.valid == nil || a.valid())
}

// roleAnswer is the role endpoint's JSON. Times are wall-clock milliseconds
// since the epoch: since is when the term was taken (the term row's since),
// at is when this answer was made, so that a watcher can lay the answers of
// several processes on one time line (tests/e2e/failover.test.mjs does).
type roleAnswer struct {
	Role     string `json:"role"`
	Term     int64  `json:"term,omitempty"`
	Since    int64  `json:"since,omitempty"`
	At       int64  `json:"at"`
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
	// The instant of the answer is read before the role: an "active" answer
	// says the process held the term at that instant or later.
	answer := roleAnswer{Role: "standby", At: r.now().UnixMilli(), Instance: r.instance}
	status := http.StatusServiceUnavailable
	if a := r.active.Load(); a != nil && (a.valid == nil || a.valid()) {
		answer.Role, answer.Term, answer.Since = "active", a.term, a.since.UnixMilli()
		status = http.StatusOK
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if req.Method == http.MethodGet {
		_ = json.NewEncoder(w).Encode(answer)
	}
}
