//go:build !linux

package failover

import "time"

// bootTime is 0 where there is no CLOCK_BOOTTIME: the lease then counts on the
// monotonic and the wall clock.
func bootTime() time.Duration { return 0 }
