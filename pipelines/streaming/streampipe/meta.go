package streampipe

import (
	"context"
	"sync"
	"time"

	"cloud.google.com/go/bigtable"

	"github.com/tandem-fp/tandem/schemas/bigtablestore"
)

// metaCell is one stream metadata cell of a feature set: it writes a time
// that only moves forward, when it moved, at most once per interval.
type metaCell struct {
	mu      sync.Mutex
	written int64 // Unix microseconds, as last written
	at      time.Time
}

// write writes t (Unix microseconds) to the cell qualifier of set's
// metadata row when it is newer than what was written and every has passed
// since the last write.
func (m *metaCell) write(ctx context.Context, tbl *bigtable.Table, set, qualifier string, t int64, every time.Duration) error {
	m.mu.Lock()
	due := t > m.written && time.Since(m.at) >= every
	m.mu.Unlock()
	if !due {
		return nil
	}
	if err := bigtablestore.WriteMeta(ctx, tbl, set, qualifier, time.UnixMicro(t)); err != nil {
		return err
	}
	m.mu.Lock()
	m.written, m.at = max(m.written, t), time.Now()
	m.mu.Unlock()
	return nil
}
