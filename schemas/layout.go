package schemas

import (
	"encoding/binary"
	"strings"
	"time"
)

// The Bigtable layout, defined once here and used by every writer and the
// reader.
//
// One table holds the data of any number of feature sets:
//
//	row key     <feature set>#<entity key>     e.g. card_activity#c_1001
//	family      batch   cells written only by the batch pipeline
//	family      stream  cells written only by the streaming pipeline
//	qualifier   <feature>@<tile size>          e.g. txn_count_1h@1m
//	timestamp   tile start (Unix microseconds, a multiple of the tile size)
//	value       the tile's partial aggregate in the versioned encoding of
//	            package transforms/aggregate
//
// One cell per tile: writing the same tile again overwrites the same cell, so
// writes are idempotent and retried or repeated firings are safe. Rows stay
// bounded because both data families carry a max-age GC policy of the feature
// set's Retention (longest window plus slack); readers filter by timestamp
// anyway, since GC is lazy.
//
// Each entity row also holds, in family stream, the cell
//
//	stream:~newest   the newest event time (Unix microseconds, 8 bytes big
//	                 endian) of the entity's events in the stream tiles;
//	                 cell timestamp that time truncated to the millisecond
//
// written in the same row mutation as the tiles (so a reader of the row
// never sees tiles newer than it says) and replacing the previous one. A
// read at `at` may take the stream head tile (see Feature.Span) as the head
// only when ~newest < at: then the tile holds no event at or after `at`.
// "~" sorts after every feature name, which never contains it.
//
// The Dataflow variant of the streaming pipeline also keeps, in family
// stream, the cell
//
//	stream:~chain    the last of its conditional row mutations applied to
//	                 the row: chain ID and sequence number, 8 bytes each,
//	                 big endian (see pipelines/streaming/streampipe);
//	                 stamped like ~newest
//
// which readers skip; it sorts before ~newest, so ~newest stays the last
// cell of the family.
//
// The row named after the feature set itself (no '#') holds its metadata in
// family meta:
//
//	meta:batch_watermark     RFC 3339 time T_b, written last by a batch run
//	meta:stream_latest_tile  RFC 3339 start of the newest tile the streaming
//	                         pipeline has written
//	meta:stream_watermark    RFC 3339 time up to which the streaming pipeline
//	                         has written what it read: the later of its
//	                         source's watermark (the newest event time read)
//	                         and the last moment a pull found the
//	                         subscription empty; rewritten about once a
//	                         second while the pipeline runs, so it stops
//	                         moving when the pipeline stops or falls behind
const (
	FamilyBatch  = "batch"
	FamilyStream = "stream"
	FamilyMeta   = "meta"

	QualifierBatchWatermark   = "batch_watermark"
	QualifierStreamLatestTile = "stream_latest_tile"
	QualifierStreamWatermark  = "stream_watermark"

	QualifierNewest = "~newest"
	QualifierChain  = "~chain"
)

// EncodeNewest is the value of a ~newest cell: t (Unix microseconds) as 8
// bytes big endian.
func EncodeNewest(t int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(t))
}

// DecodeNewest decodes a ~newest cell value; ok is false for a value of
// another length.
func DecodeNewest(b []byte) (t int64, ok bool) {
	if len(b) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(b)), true
}

// DefaultMaxFuture is the default FeatureSet.MaxFuture: how far ahead of
// the pipeline's clock an event may be stamped (clock skew between
// producers and the pipeline) before it is dead-lettered.
const DefaultMaxFuture = time.Minute

// DefaultRetentionSlack is added to the longest window to make the default
// retention of a feature set.
const DefaultRetentionSlack = 24 * time.Hour

// RowKey is the Bigtable row key of an entity of a feature set.
func RowKey(set, entity string) string { return set + "#" + entity }

// MetaRowKey is the Bigtable row key of a feature set's metadata row.
func MetaRowKey(set string) string { return set }

// SplitRowKey splits a row key into feature set and entity key; ok is false
// for a metadata row or a key of another layout.
func SplitRowKey(key string) (set, entity string, ok bool) {
	set, entity, ok = strings.Cut(key, "#")
	return set, entity, ok && entity != ""
}

// Qualifier is the column qualifier of a feature's tiles: its name and tile
// size, so a definition whose tile size changes never mixes old and new cells.
func (f Feature) Qualifier() string { return f.Name + "@" + FormatDuration(f.Tile) }
