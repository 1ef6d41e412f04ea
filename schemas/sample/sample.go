// Package sample generates realistic, deterministic events for any feature
// set: the sample data shipped under schemas/data, the input of benchmarks and
// load generators, and the events of the oracle tests that check pipelines
// and serving against a direct computation.
//
// Values follow the declared type and, where it says something, the field's
// name: amounts and prices are log-normal and rounded to cents, durations in
// milliseconds are log-normal, counts and quantities are small, merchants,
// countries, devices and pages come from Zipf-like lists with each entity
// preferring a few of them, session ids change after half an hour of quiet,
// and bools are mostly true (mostly false for names such as fraud or error).
// Entities too are Zipf-like: a few are hot, most are quiet. The same
// arguments always give the same events.
package sample

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// NullRate is the share of values, other than the entity key and the event
// time, that Events leaves null.
const NullRate = 1.0 / 200

// BurstRate is the share of events that Events gives to an entity active
// in the last half hour rather than to one drawn afresh.
const BurstRate = 0.5

// Entities is the number of distinct entities Events draws n events from:
// one per 20 events, at least 1 and at most 100 000.
func Entities(n int) int { return min(max(n/20, 1), 100_000) }

// Events returns n events of fs with event times spread evenly over
// [start, end) (with jitter), in event-time order, from Entities(n)
// entities. String entity keys look like c_1001 (the entity name's initial,
// an underscore, a number from 1001); int64 keys are numbers from 100001.
// Of a composite key (user_id, merchant), the first part is the entity
// drawn so; the others are made like other fields of their name and type
// (each user preferring a few merchants), never null, so the pairs repeat
// as they do in real data.
//
// The events share one backing array of values, so 1M events cost a few
// allocations; the string values come from fixed pools (session ids are
// made once per session).
func Events(fs *schemas.FeatureSet, seed uint64, n int, start, end time.Time) []schemas.Event {
	if n <= 0 {
		return nil
	}
	g := newGenerator(fs, seed, n)
	t0 := start.UnixMicro()
	span := max(end.UnixMicro()-t0, 1)
	step := float64(span) / float64(n)
	nf := len(fs.Fields)
	backing := make([]schemas.Value, n*nf)
	events := make([]schemas.Event, n)
	for i := range events {
		t := t0 + int64((float64(i)+g.u01())*step)
		t = min(t, t0+span-1)
		ent := g.entity(t)
		vals := backing[i*nf : (i+1)*nf : (i+1)*nf]
		g.fill(vals, ent, t)
		key := g.keys[ent]
		if fs.CompositeKey() {
			key = g.compositeKey(fs, vals)
		}
		events[i] = schemas.Event{Key: key, Time: t, Values: vals}
	}
	// Jitter can swap neighbours; keep event-time order.
	if !sort.SliceIsSorted(events, func(i, j int) bool { return events[i].Time < events[j].Time }) {
		sort.SliceStable(events, func(i, j int) bool { return events[i].Time < events[j].Time })
	}
	return events
}

// WriteJSONL writes events to w as JSON lines (schemas.FeatureSet.AppendJSON).
func WriteJSONL(w io.Writer, fs *schemas.FeatureSet, events []schemas.Event) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	buf := make([]byte, 0, 256)
	for _, e := range events {
		buf = fs.AppendJSON(buf[:0], e)
		buf = append(buf, '\n')
		if _, err := bw.Write(buf); err != nil {
			return fmt.Errorf("write events: %w", err)
		}
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write events: %w", err)
	}
	return nil
}

// recent is an entity that had an event at t.
type recent struct {
	ent int
	t   int64
}

// kind is how a field's values are made.
type kind uint8

const (
	kindKey kind = iota
	kindTime
	kindTimestamp // another timestamp: a little before the event
	kindPick      // a string from a pool, with per-entity preferences
	kindSession   // a session id
	kindAmount    // log-normal money, per-entity scale, cents
	kindUnit      // a float in [0, 1)
	kindFloat     // log-normal float, 3 decimals
	kindSmallInt  // a count or quantity: 0 to about 10
	kindMillis    // log-normal duration in ms
	kindBytes     // log-normal size
	kindAge       // 18 to 77
	kindIntID     // a Zipf-distributed id
	kindInt       // 0 to 99
	kindBool      // true with probability p
)

type fieldGen struct {
	kind    kind
	notNull bool    // a part of a composite key after the first
	p       float64 // kindBool: P(true); kindPick: P(an entity's preferred value)
	pool    []string
	dist    *zipf
	pref    int // kindPick: how many preferred values an entity has
}

type generator struct {
	rng      rand.PCG
	seed     uint64
	fields   []fieldGen
	entities *zipf
	keys     []string
	keyVals  []schemas.Value
	scale    []float64 // per-entity amount scale (log)
	// Recently active entities, a ring.
	recent [8]recent
	next   int
	// Sessions: the current session of each entity and its last event time.
	sessionID   []string
	sessionSeq  []int
	sessionLast []int64
}

func newGenerator(fs *schemas.FeatureSet, seed uint64, n int) *generator {
	g := &generator{seed: seed}
	g.rng.Seed(seed, 0x74616e64656d) // "tandem"
	for i := range g.recent {
		g.recent[i].ent = -1
	}
	k := Entities(n)
	g.entities = newZipf(k, 0.7)
	g.keys = make([]string, k)
	g.keyVals = make([]schemas.Value, k)
	g.scale = make([]float64, k)
	keyIdx := fs.KeyIndexes()
	keyType := fs.Fields[keyIdx[0]].Type
	prefix := "e_"
	if fs.Entity.Name != "" {
		prefix = fs.Entity.Name[:1] + "_"
	}
	for i := range k {
		if keyType == schemas.Int64 {
			id := int64(100001 + i)
			g.keys[i] = strconv.FormatInt(id, 10)
			g.keyVals[i] = schemas.Int64Value(id)
		} else {
			g.keys[i] = prefix + strconv.Itoa(1001+i)
			g.keyVals[i] = schemas.StringValue(g.keys[i])
		}
		g.scale[i] = 0.5 * normal(hashU01(seed, uint64(i), 0xa11, 0), hashU01(seed, uint64(i), 0xa11, 1))
	}
	for i, f := range fs.Fields {
		var fg fieldGen
		switch {
		case i == keyIdx[0]:
			fg.kind = kindKey
		case i == fs.TimeIndex():
			fg.kind = kindTime
		default:
			fg = fieldFor(f)
			fg.notNull = slices.Contains(keyIdx, i)
		}
		g.fields = append(g.fields, fg)
		if fg.kind == kindSession && g.sessionID == nil {
			g.sessionID = make([]string, k)
			g.sessionSeq = make([]int, k)
			g.sessionLast = make([]int64, k)
		}
	}
	return g
}

// has reports whether a word of the lower-cased snake_case name starts with
// one of prefixes: has("cart_items", "item") but not has("cart_items", "ms").
func has(name string, prefixes ...string) bool {
	for word := range strings.SplitSeq(name, "_") {
		for _, p := range prefixes {
			if strings.HasPrefix(word, p) {
				return true
			}
		}
	}
	return false
}

// fieldFor chooses how to make the values of f from its type and name.
func fieldFor(f schemas.Field) fieldGen {
	name := strings.ToLower(f.Name)
	pick := func(pool []string, s, p float64, pref int) fieldGen {
		return fieldGen{kind: kindPick, pool: pool, dist: newZipf(len(pool), s), p: p, pref: pref}
	}
	switch f.Type {
	case schemas.Timestamp:
		return fieldGen{kind: kindTimestamp}
	case schemas.String:
		switch {
		case has(name, "session"):
			return fieldGen{kind: kindSession}
		case has(name, "merchant", "store", "shop", "vendor", "payee"):
			return pick(merchants, 1.0, 0.7, 6)
		case has(name, "country"):
			return pick(countries, 1.2, 0.95, 1)
		case has(name, "device", "platform", "os", "browser"):
			return pick(devices, 1.0, 0.9, 2)
		case has(name, "page", "url", "path", "screen"):
			return pick(pages, 1.1, 0.3, 4)
		case has(name, "categor", "mcc"):
			return pick(categories, 1.0, 0.6, 3)
		case has(name, "currency"):
			return pick(currencies, 1.5, 0.97, 1)
		case has(name, "channel", "method", "source"):
			return pick(channels, 1.0, 0.8, 2)
		case has(name, "city"):
			return pick(cities, 1.0, 0.9, 2)
		}
		return pick(genericPool(f.Name, 50), 1.0, 0.5, 5)
	case schemas.Float64:
		switch {
		case has(name, "amount", "price", "total", "value", "revenue", "cost", "spend", "fare", "balance"):
			return fieldGen{kind: kindAmount}
		case has(name, "score", "prob", "rate", "ratio", "pct", "share"):
			return fieldGen{kind: kindUnit}
		}
		return fieldGen{kind: kindFloat}
	case schemas.Int64:
		switch {
		case has(name, "count", "qty", "quantity", "item", "num", "click", "retr"):
			return fieldGen{kind: kindSmallInt}
		case has(name, "ms", "millis", "duration", "dwell", "latency", "elapsed"):
			return fieldGen{kind: kindMillis}
		case has(name, "bytes", "size", "len"):
			return fieldGen{kind: kindBytes}
		case has(name, "age"):
			return fieldGen{kind: kindAge}
		case strings.HasSuffix(name, "id"):
			return fieldGen{kind: kindIntID, dist: newZipf(1000, 1.0)}
		}
		return fieldGen{kind: kindInt}
	case schemas.Bool:
		switch {
		case has(name, "fraud", "error", "fail", "bot", "declin", "refund", "chargeback", "flag", "block", "test", "spam", "dispute"):
			return fieldGen{kind: kindBool, p: 0.03}
		case has(name, "approved", "success", "ok", "valid", "complete"):
			return fieldGen{kind: kindBool, p: 0.95}
		}
		return fieldGen{kind: kindBool, p: 0.85}
	}
	return fieldGen{kind: kindInt}
}

// fill sets the values of one event of entity ent at time t.
func (g *generator) fill(vals []schemas.Value, ent int, t int64) {
	for i, f := range g.fields {
		switch f.kind {
		case kindKey:
			vals[i] = g.keyVals[ent]
			continue
		case kindTime:
			vals[i] = schemas.Value{Type: schemas.Timestamp, Int: t}
			continue
		}
		if g.u01() < NullRate && !f.notNull {
			vals[i] = schemas.Value{}
			continue
		}
		switch f.kind {
		case kindTimestamp:
			vals[i] = schemas.Value{Type: schemas.Timestamp, Int: t - int64(-math.Log(1-g.u01())*600e6)}
		case kindPick:
			var j int
			if g.u01() < f.p {
				// One of the entity's preferred values, the first ones more often.
				r := int(float64(f.pref) * g.u01() * g.u01())
				j = f.dist.sample(hashU01(g.seed, uint64(ent), uint64(i), uint64(r)))
			} else {
				j = f.dist.sample(g.u01())
			}
			vals[i] = schemas.StringValue(f.pool[j])
		case kindSession:
			if g.sessionID[ent] == "" || t-g.sessionLast[ent] > 30*60e6 {
				g.sessionSeq[ent]++
				g.sessionID[ent] = "s_" + g.keys[ent] + "_" + strconv.Itoa(g.sessionSeq[ent])
			}
			g.sessionLast[ent] = t
			vals[i] = schemas.StringValue(g.sessionID[ent])
		case kindAmount:
			a := math.Exp(3.0 + g.scale[ent] + 1.0*g.normal())
			vals[i] = schemas.Float64Value(max(math.Round(a*100)/100, 0.5))
		case kindUnit:
			vals[i] = schemas.Float64Value(math.Round(g.u01()*1e4) / 1e4)
		case kindFloat:
			vals[i] = schemas.Float64Value(math.Round(math.Exp(g.normal())*1e3) / 1e3)
		case kindSmallInt:
			// Geometric with mean 1.5, capped.
			vals[i] = schemas.Int64Value(min(int64(math.Log(1-g.u01())/math.Log(0.6)), 20))
		case kindMillis:
			vals[i] = schemas.Int64Value(int64(math.Exp(8 + g.normal())))
		case kindBytes:
			vals[i] = schemas.Int64Value(int64(math.Exp(10 + 1.5*g.normal())))
		case kindAge:
			vals[i] = schemas.Int64Value(18 + int64(g.u01()*60))
		case kindIntID:
			vals[i] = schemas.Int64Value(int64(1 + f.dist.sample(g.u01())))
		case kindInt:
			vals[i] = schemas.Int64Value(int64(g.u01() * 100))
		case kindBool:
			vals[i] = schemas.BoolValue(g.u01() < f.p)
		}
	}
}

// compositeKey is the entity key of an event of a composite-key set.
func (g *generator) compositeKey(fs *schemas.FeatureSet, vals []schemas.Value) string {
	var buf [schemas.MaxKeyParts]string
	parts := buf[:0]
	for _, k := range fs.KeyIndexes() {
		p, _ := schemas.KeyPart(vals[k])
		parts = append(parts, p)
	}
	return schemas.EntityKey(parts...)
}

// entity picks the entity of the next event, at time t: half the time one
// that was active in the last half hour (so events come in bursts, like the
// transactions of a shopping trip or the page views of a visit), else one
// drawn from the Zipf-like popularity of all entities.
func (g *generator) entity(t int64) int {
	const window = 30 * 60e6
	if g.u01() < BurstRate {
		j := int(g.u01() * float64(len(g.recent)))
		if r := g.recent[j]; r.ent >= 0 && t-r.t < window {
			g.recent[j].t = t
			return r.ent
		}
	}
	ent := g.entities.sample(g.u01())
	g.recent[g.next] = recent{ent: ent, t: t}
	g.next = (g.next + 1) % len(g.recent)
	return ent
}

// u01 returns a uniform float64 in [0, 1).
func (g *generator) u01() float64 { return float64(g.rng.Uint64()>>11) * 0x1p-53 }

// normal returns a standard normal variate.
func (g *generator) normal() float64 { return normal(g.u01(), g.u01()) }

// normal turns two uniform variates into a standard normal one (Box-Muller).
func normal(u1, u2 float64) float64 {
	return math.Sqrt(-2*math.Log(1-u1)) * math.Cos(2*math.Pi*u2)
}

// hashU01 is a uniform float64 in [0, 1) determined by its arguments
// (SplitMix64 finalizer), for per-entity choices that need no state.
func hashU01(a, b, c, d uint64) float64 {
	x := a ^ bits.RotateLeft64(b, 17) ^ bits.RotateLeft64(c, 31) ^ bits.RotateLeft64(d, 47)
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	x ^= x >> 31
	return float64(x>>11) * 0x1p-53
}

// zipf samples 0..n-1 with P(i) proportional to 1/(i+1)^s.
type zipf struct{ cdf []float64 }

func newZipf(n int, s float64) *zipf {
	z := &zipf{cdf: make([]float64, n)}
	var sum float64
	for i := range n {
		sum += math.Pow(float64(i+1), -s)
		z.cdf[i] = sum
	}
	for i := range z.cdf {
		z.cdf[i] /= sum
	}
	return z
}

// sample maps a uniform u in [0, 1) to an index.
func (z *zipf) sample(u float64) int {
	i := sort.SearchFloat64s(z.cdf, u)
	return min(i, len(z.cdf)-1)
}

// genericPool is a pool of n values for a string field with no known
// meaning: field_1, field_2, ...
func genericPool(field string, n int) []string {
	p := make([]string, n)
	for i := range p {
		p[i] = strings.ToLower(field) + "_" + strconv.Itoa(i+1)
	}
	return p
}

// Pools, most popular first.
var (
	merchants = []string{
		"Amazon", "Starbucks", "Walmart", "Shell", "Uber", "Target", "McDonald's", "Whole Foods",
		"Costco", "Netflix", "Spotify", "Apple", "Lyft", "Chevron", "CVS Pharmacy", "Walgreens",
		"Home Depot", "Trader Joe's", "Blue Bottle Coffee", "Chipotle", "DoorDash", "Airbnb",
		"Delta Air Lines", "Best Buy", "IKEA", "Safeway", "Kroger", "Subway", "Panera Bread",
		"Steam", "H&M", "Zara", "Etsy", "eBay", "Sephora", "Nike", "Marriott", "Hertz",
		"Ace Hardware", "Corner Bakery",
	}
	countries  = []string{"US", "GB", "DE", "FR", "IN", "BR", "CA", "JP", "ES", "IT", "NL", "MX", "AU", "PL", "SE", "KR", "NG", "ZA"}
	devices    = []string{"ios", "android", "web-chrome", "web-safari", "web-firefox", "web-edge", "ipad", "android-tablet"}
	pages      = []string{"/", "/search", "/product", "/category/shoes", "/category/electronics", "/cart", "/checkout", "/account", "/help", "/deals", "/product/reviews", "/orders", "/wishlist", "/login", "/signup"}
	categories = []string{"grocery", "restaurants", "fuel", "travel", "entertainment", "electronics", "apparel", "health", "home", "services"}
	currencies = []string{"USD", "EUR", "GBP", "INR", "BRL", "CAD", "JPY"}
	channels   = []string{"online", "pos", "contactless", "atm", "phone"}
	cities     = []string{"New York", "London", "Berlin", "Paris", "Mumbai", "São Paulo", "Toronto", "Tokyo", "Madrid", "Milan"}
)

// The sample data under schemas/data: go generate ./schemas writes
// Shipped(fs) for each example definition to data/<name>.jsonl.
var (
	shippedStart = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	shippedEnd   = shippedStart.Add(48 * time.Hour)
)

// Shipped returns the events of the sample data file shipped for fs under
// schemas/data: 600 events over the two days from 2026-03-01T00:00:00Z,
// seed 1.
func Shipped(fs *schemas.FeatureSet) []schemas.Event {
	return Events(fs, 1, 600, shippedStart, shippedEnd)
}
