package schemas

import "time"

// Event times and timestamp values are Unix microseconds of an instant whose
// UTC year is 0000 to 9999, so that every one of them has an RFC 3339 form.
var (
	minMicros = daysFromCivil(0, 1, 1) * 86400 * 1e6
	maxMicros = daysFromCivil(10000, 1, 1)*86400*1e6 - 1
)

// timestampLayout is how EncodeJSON writes timestamps: RFC 3339 in UTC with
// up to six fractional digits.
const timestampLayout = "2006-01-02T15:04:05.999999Z07:00"

// inRange reports whether Unix microseconds t are in the representable range.
func inRange(t int64) bool { return t >= minMicros && t <= maxMicros }

// microsOf returns t as Unix microseconds, ok false when out of range.
func microsOf(t time.Time) (int64, bool) {
	if y := t.UTC().Year(); y < 0 || y > 9999 {
		return 0, false
	}
	return t.UnixMicro(), true
}

// parseTimestamp parses an RFC 3339 timestamp, 2006-01-02T15:04:05Z or with
// 1 to 9 fractional digits and a Z or ±hh:mm offset, to Unix microseconds,
// truncating below the microsecond. Every string it accepts, time.Parse with
// time.RFC3339Nano accepts too, as the same instant.
//
// With civil set it also accepts the forms of BigQuery and of most SQL
// databases: a space for the T, no zone at all or a " UTC" suffix (both
// meaning UTC), and an offset of hours only (±hh).
func parseTimestamp(b []byte, civil bool) (int64, bool) {
	if len(b) < 19 || b[4] != '-' || b[7] != '-' || b[13] != ':' || b[16] != ':' {
		return 0, false
	}
	if b[10] != 'T' && !(civil && (b[10] == ' ' || b[10] == 't')) {
		return 0, false
	}
	year, ok1 := digits(b[0:4])
	month, ok2 := digits(b[5:7])
	day, ok3 := digits(b[8:10])
	hour, ok4 := digits(b[11:13])
	minute, ok5 := digits(b[14:16])
	sec, ok6 := digits(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return 0, false
	}
	i := 19
	var nanos int64
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if i-start < 9 {
				nanos = nanos*10 + int64(b[i]-'0')
			}
			i++
		}
		n := i - start
		if n == 0 || n > 9 {
			return 0, false
		}
		for ; n < 9; n++ {
			nanos *= 10
		}
	}
	var offset int64 // seconds east of UTC
	switch rest := b[i:]; {
	case len(rest) == 1 && (rest[0] == 'Z' || civil && rest[0] == 'z'):
	case civil && (len(rest) == 0 || string(rest) == " UTC"):
	case len(rest) >= 3 && (rest[0] == '+' || rest[0] == '-'):
		oh, ok := digits(rest[1:3])
		var om int64
		switch {
		case len(rest) == 6 && rest[3] == ':':
			var okm bool
			om, okm = digits(rest[4:6])
			ok = ok && okm
		case civil && len(rest) == 3:
		default:
			ok = false
		}
		if !ok || oh > 23 || om > 59 {
			return 0, false
		}
		offset = oh*3600 + om*60
		if rest[0] == '-' {
			offset = -offset
		}
	default:
		return 0, false
	}
	secs := daysFromCivil(year, month, day)*86400 + hour*3600 + minute*60 + sec - offset
	t := secs*1e6 + nanos/1000
	if !inRange(t) {
		return 0, false
	}
	return t, true
}

// digits parses a fixed-width run of decimal digits.
func digits(b []byte) (int64, bool) {
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// daysIn is the number of days of month in year (proleptic Gregorian).
func daysIn(month, year int64) int64 {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysFromCivil is the number of days from 1970-01-01 to the given date of
// the proleptic Gregorian calendar (Howard Hinnant's algorithm).
func daysFromCivil(y, m, d int64) int64 {
	if m <= 2 {
		y--
	}
	era := y
	if era < 0 {
		era -= 399
	}
	era /= 400
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return era*146097 + doe - 719468
}
