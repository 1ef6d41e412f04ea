package schemas

import "time"

// Event is one decoded event of a feature set: its entity key, its event
// time and its field values in the order of FeatureSet.Fields (the key and
// the event time are among them too). Batch rows and streaming messages
// decode to the same Event.
type Event struct {
	Key    string  // entity key; int64 keys in decimal
	Time   int64   // event time, Unix microseconds
	Values []Value // one per declared field, in file order
}

// EventTime returns the event time as a time.Time in UTC.
func (e Event) EventTime() time.Time { return time.UnixMicro(e.Time).UTC() }

// TileStart returns the start of the tile of size tile that contains the
// instant t (Unix microseconds): t rounded down to a multiple of tile since
// the Unix epoch.
func TileStart(t int64, tile time.Duration) int64 {
	size := tile.Microseconds()
	s := t - t%size
	if t < 0 && t%size != 0 {
		s -= size
	}
	return s
}

// Span returns the event-time range [from, to) (Unix microseconds) that
// the value of f at instant at (Unix microseconds) aggregates. This is
// Tandem's window contract, the same for serving and training:
//
//	[TileStart(at − Window), at)
//
// the whole tiles from TileStart(at) − Window up to the tile holding at (the
// head tile), plus the head: the events in [TileStart(at), at). It is exactly
// Window long when at is on a tile boundary and at most one tile longer
// otherwise (a "sawtooth" window). It never contains an event at or after
// at. Window is a multiple of Tile, so TileStart(at − Window) =
// TileStart(at) − Window.
func (f Feature) Span(at int64) (from, to int64) {
	return TileStart(at, f.Tile) - f.Window.Microseconds(), at
}

// WindowTiles returns the tile starts (Unix microseconds) of f's window at
// instant at under the contract of Span: first is TileStart(at) − Window,
// the oldest whole tile, and head is TileStart(at), the tile holding at.
// The tiles first, first+Tile, …, head−Tile are whole (Window/Tile of
// them); of the head tile only the events before at belong to the window,
// and none at all when at is on a tile boundary (at == head).
func (f Feature) WindowTiles(at time.Time) (first, head int64) {
	head = TileStart(at.UnixMicro(), f.Tile)
	return head - f.Window.Microseconds(), head
}
