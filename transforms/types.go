// Package transforms provides the Beam transforms that Tandem's batch and
// streaming pipelines share: decoding records into events with a dead-letter
// output, event-time stamping, tiling events into partial aggregates with a
// CombineFn over the aggregation algebra (package transforms/aggregate), and
// turning tiles into Bigtable mutations (package transforms/bigtablewrite
// writes them).
package transforms

import (
	"time"

	"github.com/tandem-fp/tandem/schemas"
)

// Tile is the partial aggregate of one feature of one entity over one tile
// [Start, Start+size) — what both pipelines write and the server merges.
type Tile struct {
	Set     string `json:"set"`
	Entity  string `json:"entity"`
	Feature string `json:"feature"`
	Start   int64  `json:"start"`   // tile start, Unix microseconds
	Partial []byte `json:"partial"` // aggregate encoding
}

// StartTime returns the tile start as a time.Time in UTC.
func (t Tile) StartTime() time.Time { return time.UnixMicro(t.Start).UTC() }

// DeadLetter is a record a pipeline could not use: the raw record, why, and
// where it failed. Dead letters are never dropped silently: every pipeline
// writes them somewhere a user can read and counts them, as JSON lines of
// one format (see MarshalJSON).
type DeadLetter struct {
	Set    string // the feature set, or "training"
	Stage  string // decode, late, future, spine, ...
	Reason string // human-readable cause
	Raw    []byte // the record as received
}

// Dead-letter stages.
const (
	StageDecode = "decode"
	StageLate   = "late"
	StageFuture = "future" // stamped more than max_future after the pipeline's clock
)

// Cell is one Bigtable cell to set.
type Cell struct {
	Family    string `json:"family"`
	Qualifier string `json:"qualifier"`
	Timestamp int64  `json:"ts"` // Unix microseconds, a multiple of 1000
	Value     []byte `json:"value"`
	// Replace deletes every other version of the column in the same
	// (atomic) row mutation: the cell is the column's only value, such as
	// an entity's schemas.QualifierNewest.
	Replace bool `json:"replace,omitempty"`
}

// RowMutation is a set of cells to write to one row.
type RowMutation struct {
	RowKey string `json:"row"`
	Cells  []Cell `json:"cells"`
}

// eventKey is the key tiles are combined under: the entity key of an event.
func eventKey(e schemas.Event) string { return e.Key }
