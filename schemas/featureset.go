package schemas

import (
	"fmt"
	"time"
)

// FeatureSet is one loaded and validated feature-set definition.
// Load and Parse are the only constructors; a FeatureSet is read-only after.
type FeatureSet struct {
	Name            string        `json:"name"`
	Entity          Entity        `json:"entity"`
	EventTime       string        `json:"event_time"`
	Fields          []Field       `json:"fields"` // in file order
	Sources         Sources       `json:"sources"`
	AllowedLateness time.Duration `json:"-"`
	// MaxFuture is how far past the pipeline's processing time an event
	// time may lie before the event is dead-lettered as stamped in the
	// future (YAML key max_future, default DefaultMaxFuture): it would
	// count in a read at "now" before it happened.
	MaxFuture time.Duration `json:"-"`
	// Retention is how long tiles are kept (the GC max age of the data
	// families): YAML key retention, default MaxWindow + DefaultRetentionSlack.
	Retention time.Duration `json:"-"`
	// StaleAfter is how far behind a read's `at` the feature set's data
	// may be before its values are STALE: YAML key stale_after, 0 when the
	// definition sets none (see FreshFor for the default).
	StaleAfter time.Duration `json:"-"`
	Features   []Feature     `json:"features"` // in file order
	// Derived are the derived features (YAML key derived), in file order:
	// computed at read time from Features (see EvalDerived).
	Derived []Derived `json:"derived,omitempty"`

	// File is the path the definition was loaded from ("" if parsed from bytes).
	File string `json:"-"`

	nameLine     int   // line of the name in File, for LoadAll's duplicate check
	keyIdx       []int // KeyIndexes
	timeIdx      int   // TimeIndex
	fieldIndex   map[string]int
	featureIndex map[string]int
}

// Entity names the entity a feature set describes and the event fields
// that hold its key: one (entity.key: card_id) or, for a composite key,
// several (entity.key: [user_id, merchant]), each a string or int64 field.
// See EntityKey for how the parts make a row key.
type Entity struct {
	Name string
	// Keys are the key fields, in the order listed; one for a single key,
	// 2 to MaxKeyParts for a composite key.
	Keys []string
}

// Field is one declared event field.
type Field struct {
	Name string `json:"name"`
	Type Type   `json:"type"`
}

// Sources are where the pipelines read events from by default.
type Sources struct {
	Batch  BatchSource  `json:"batch"`
	Stream StreamSource `json:"stream"`
}

// BatchSource is exactly one of a BigQuery table, a BigQuery query, or a file glob.
type BatchSource struct {
	BigQueryTable string `json:"bigquery_table,omitempty"`
	BigQueryQuery string `json:"bigquery_query,omitempty"`
	Files         string `json:"files,omitempty"` // glob, relative paths resolved against the definition's directory
}

// StreamSource is the Pub/Sub subscription the streaming pipeline reads.
type StreamSource struct {
	Subscription string `json:"pubsub_subscription,omitempty"`
}

// Feature is one feature: Op over Field in a sliding Window, stored as tiles
// of size Tile.
type Feature struct {
	Name   string        `json:"name"`
	Op     Op            `json:"op"`
	Field  string        `json:"field,omitempty"` // "" for count
	Window time.Duration `json:"-"`
	Tile   time.Duration `json:"-"`
	// Where is the feature's filter (YAML key where), "" for none: only
	// events for which it is true are aggregated (see Keeps).
	Where string `json:"where,omitempty"`
	// K is how many values last_k, first_k and top_k keep (YAML key k,
	// 1 to MaxK); 0 for the other ops.
	K int `json:"k,omitempty"`
	// Percentiles are approx_percentile's percentiles, each in (0, 1), in
	// the definition's order (YAML key percentiles); nil for other ops.
	Percentiles []float64 `json:"percentiles,omitempty"`
	// Buckets is how many buckets histogram keeps (YAML key buckets, 1 to
	// MaxBuckets, default DefaultBuckets); 0 for the other ops.
	Buckets int `json:"buckets,omitempty"`

	// Index is the feature's position in FeatureSet.Features.
	Index int `json:"-"`
	// FieldIndex is the position of Field in FeatureSet.Fields, -1 for count.
	FieldIndex int `json:"-"`
	// FieldType is the declared type of Field (Null for count).
	FieldType Type `json:"-"`
	// Filter is Where compiled over the set's fields (slot i is
	// Fields[i]), nil for none.
	Filter *Expr `json:"-"`
}

// Keeps reports whether event e passes f's filter (always, for a feature
// without one): batch and streaming tiling and the training pipeline
// aggregate only the events it keeps. It does not allocate.
func (f *Feature) Keeps(e Event) bool { return f.Filter == nil || f.Filter.True(e.Values) }

// fieldEnv is the environment of a filter: the set's fields, each in the
// slot of its position in Fields (Event.Values).
func (fs *FeatureSet) fieldEnv() ExprEnv {
	names := make([]string, len(fs.Fields))
	for i, f := range fs.Fields {
		names[i] = f.Name
	}
	return ExprEnv{
		Names: names,
		Lookup: func(name string) (int, Type, bool) {
			for i, f := range fs.Fields {
				if f.Name == name {
					return i, f.Type, true
				}
			}
			return 0, Null, false
		},
	}
}

// Tiles is the number of whole tiles in f's window: Window/Tile. A read of f
// touches at most Tiles()+1 tiles on each side, the last one the head tile
// (see Span).
func (f Feature) Tiles() int { return int(f.Window / f.Tile) }

// ResultType is the type of the feature's value.
func (f Feature) ResultType() Type { return f.Op.ResultType(f.FieldType) }

// FieldIndex returns the position of the named field in Fields.
func (fs *FeatureSet) FieldIndex(name string) (int, bool) {
	i, ok := fs.fieldIndex[name]
	return i, ok
}

// Feature returns the named feature.
func (fs *FeatureSet) Feature(name string) (Feature, bool) {
	i, ok := fs.featureIndex[name]
	if !ok {
		return Feature{}, false
	}
	return fs.Features[i], true
}

// TimeIndex is the position of the event-time field in Fields.
func (fs *FeatureSet) TimeIndex() int { return fs.fieldIndex[fs.EventTime] }

// Defaults of FreshFor for a feature set whose definition sets no
// stale_after.
const (
	// DefaultStreamStaleAfter is the default of a set with a stream
	// source (and of the server's --stale_after): its stream watermark
	// moves about once a second while the streaming pipeline runs, so
	// minutes behind means the pipeline is down or far behind.
	DefaultStreamStaleAfter = 5 * time.Minute
	// DefaultBatchStaleAfter, plus the set's largest tile, is the default
	// of a batch-only set, refreshed by a daily batch run: its watermark
	// (the run's as_of, rounded down to the largest tile) is up to a day
	// plus a largest tile old just before the next run commits, and the
	// extra 2 hours leave the run time to finish.
	DefaultBatchStaleAfter = 26 * time.Hour
)

// FreshFor is how far behind `at` the set's data may be before its values
// are STALE: StaleAfter when the definition sets it; otherwise, for a set
// with a stream source, streamDefault (the server's --stale_after, by
// default DefaultStreamStaleAfter); for a batch-only set,
// DefaultBatchStaleAfter + MaxTile.
func (fs *FeatureSet) FreshFor(streamDefault time.Duration) time.Duration {
	switch {
	case fs.StaleAfter > 0:
		return fs.StaleAfter
	case fs.Sources.Stream.Subscription != "":
		return streamDefault
	}
	return DefaultBatchStaleAfter + fs.MaxTile()
}

// MaxWindow is the longest window of any feature.
func (fs *FeatureSet) MaxWindow() time.Duration {
	var m time.Duration
	for _, f := range fs.Features {
		m = max(m, f.Window)
	}
	return m
}

// MaxTile is the largest tile size of any feature.
func (fs *FeatureSet) MaxTile() time.Duration {
	var m time.Duration
	for _, f := range fs.Features {
		m = max(m, f.Tile)
	}
	return m
}

// MinTile is the smallest tile size of any feature.
func (fs *FeatureSet) MinTile() time.Duration {
	m := time.Duration(0)
	for _, f := range fs.Features {
		if m == 0 || f.Tile < m {
			m = f.Tile
		}
	}
	return m
}

// index builds the lookup maps and the per-feature derived fields. The
// loader calls it after validation.
func (fs *FeatureSet) index() {
	fs.fieldIndex = make(map[string]int, len(fs.Fields))
	for i, f := range fs.Fields {
		fs.fieldIndex[f.Name] = i
	}
	fs.keyIdx = make([]int, len(fs.Entity.Keys))
	for i, k := range fs.Entity.Keys {
		fs.keyIdx[i] = fs.fieldIndex[k]
	}
	fs.timeIdx = fs.fieldIndex[fs.EventTime]
	fs.featureIndex = make(map[string]int, len(fs.Features))
	for i := range fs.Features {
		f := &fs.Features[i]
		f.Index = i
		f.FieldIndex = -1
		f.FieldType = Null
		if j, ok := fs.fieldIndex[f.Field]; ok && f.Field != "" {
			f.FieldIndex = j
			f.FieldType = fs.Fields[j].Type
		}
		fs.featureIndex[f.Name] = i
	}
}

// TileLadder is the set of tile sizes Tandem chooses from, smallest first.
var TileLadder = []time.Duration{
	time.Second, 5 * time.Second, 15 * time.Second,
	time.Minute, 5 * time.Minute, 15 * time.Minute,
	time.Hour, 3 * time.Hour, 6 * time.Hour, 24 * time.Hour,
}

// MinTilesPerWindow is how many tiles the default tile size leaves in a window
// at least, when some size of the ladder allows it: the window's oldest edge
// is then exact to 1/48 of the window (about 2%).
const MinTilesPerWindow = 48

// MaxTilesPerWindow bounds the cells one read touches per feature and side.
// A window that would need more tiles than this is rejected at load.
const MaxTilesPerWindow = 1000

// DefaultTile returns the tile size Tandem chooses for a window: the largest
// size of TileLadder that divides the window and leaves at least
// MinTilesPerWindow tiles in it; if none does (windows under 48s), the
// smallest size that divides it, so short windows stay as exact as they can
// be. For example 30s → 1s (30 tiles), 1h → 1m (60 tiles), 24h → 15m (96),
// 7d → 3h (56), 30d → 6h (120), 10m → 5s (120).
func DefaultTile(window time.Duration) time.Duration {
	for i := len(TileLadder) - 1; i >= 0; i-- {
		if t := TileLadder[i]; window%t == 0 && window/t >= MinTilesPerWindow {
			return t
		}
	}
	for _, t := range TileLadder {
		if window%t == 0 {
			return t
		}
	}
	return 0
}

// checkTile reports why tile cannot cover window, or nil.
func checkTile(window, tile time.Duration) error {
	switch {
	case tile <= 0:
		return fmt.Errorf("no tile size divides window %s; use a window that is a whole number of seconds", FormatDuration(window))
	case tile%time.Second != 0:
		return fmt.Errorf("tile %s is not a whole number of seconds", FormatDuration(tile))
	case window%tile != 0:
		return fmt.Errorf("tile %s does not divide window %s", FormatDuration(tile), FormatDuration(window))
	case window/tile > MaxTilesPerWindow:
		return fmt.Errorf("window %s needs %d tiles of %s, more than the %d a read may touch; choose a larger tile or a rounder window",
			FormatDuration(window), window/tile, FormatDuration(tile), MaxTilesPerWindow)
	}
	return nil
}

// FormatDuration formats d in the definition syntax, using the largest unit
// of d, h, m, s that divides it ("7d", "90m", "15s").
func FormatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0s"
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	case d%time.Second == 0:
		return fmt.Sprintf("%ds", d/time.Second)
	}
	return d.String()
}
