package schemas

import (
	"errors"
	"fmt"
	"time"
)

var errBadDuration = errors.New("bad duration")

// ParseDuration parses a duration in the definition syntax: a whole number
// followed by one unit, s, m, h or d (a day is 24 hours), such as "90s",
// "10m", "24h" or "7d". Zero ("0s") parses; callers that need a positive
// duration check for it. It is the inverse of FormatDuration.
func ParseDuration(s string) (time.Duration, error) {
	if len(s) < 2 || len(s) > 24 {
		return 0, badDuration(s)
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 's':
		unit = time.Second
	case 'm':
		unit = time.Minute
	case 'h':
		unit = time.Hour
	case 'd':
		unit = 24 * time.Hour
	default:
		return 0, badDuration(s)
	}
	var n int64
	for _, c := range []byte(s[:len(s)-1]) {
		if c < '0' || c > '9' {
			return 0, badDuration(s)
		}
		n = n*10 + int64(c-'0')
		if n > int64(1<<63-1)/int64(unit) {
			return 0, fmt.Errorf("%w %q (out of range)", errBadDuration, s)
		}
	}
	return time.Duration(n) * unit, nil
}

func badDuration(s string) error {
	return fmt.Errorf("%w %q (want a whole number followed by s, m, h or d)", errBadDuration, s)
}
