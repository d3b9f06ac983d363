package failover

import "time"

// The lease must run out for a process that did not run for a while: paused,
// suspended, or on a virtual machine that was frozen. Go's monotonic clock
// (CLOCK_MONOTONIC on Linux) stands still while the system is suspended, and
// on a VM whose hypervisor restores the guest's clock on resume it stands
// still while the VM was frozen; CLOCK_BOOTTIME counts suspend; the wall
// clock is stepped forward by the kernel on resume and by NTP (or the
// hypervisor's time sync) after a freeze. The lease is over as soon as any of
// the three says so.

// clockReading is one reading of the three clocks.
type clockReading struct {
	mono time.Duration // monotonic, since the clock was made
	boot time.Duration // CLOCK_BOOTTIME; 0 where the system has none
	wall int64         // Unix nanoseconds
}

// clock reads the three clocks; tests give a Leader one of their own.
type clock func() clockReading

// systemClock is the real clock, monotonic from now on.
func systemClock() clock {
	start := time.Now()
	return func() clockReading {
		now := time.Now()
		return clockReading{mono: now.Sub(start), boot: bootTime(), wall: now.UnixNano()}
	}
}

// leaseHolds says whether a lease confirmed at beat still holds at now, on
// every clock. A wall clock stepped back by a lease or more ends it too: on
// such a clock the lease cannot be measured any more, and ending it only
// costs a takeover.
func leaseHolds(beat, now clockReading, lease time.Duration) bool {
	if now.mono-beat.mono >= lease {
		return false
	}
	if beat.boot != 0 && now.boot-beat.boot >= lease {
		return false
	}
	wall := time.Duration(now.wall - beat.wall)
	return wall < lease && wall > -lease
}
