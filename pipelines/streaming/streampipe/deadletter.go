package streampipe

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem"
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem/gcs"   // gs:// dead-letter prefixes
	_ "github.com/apache/beam/sdks/v2/go/pkg/beam/io/filesystem/local" // local dead-letter prefixes

	"github.com/tandem-fp/tandem/transforms"
)

// deadLetters writes dead letters as JSON lines (transforms.DeadLetter), one
// new file per call named <Prefix>-<UTC time>-<random>.jsonl, closed (and
// synced, for local files) before Write returns, so that the messages they
// came from can then be acknowledged. With an empty Prefix the dead letters
// are written to standard error.
type deadLetters struct {
	Prefix string
}

// Write writes letters durably.
func (d *deadLetters) Write(ctx context.Context, letters []transforms.DeadLetter) error {
	if d.Prefix == "" {
		return writeLetters(os.Stderr, letters)
	}
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return fmt.Errorf("dead-letter file name: %w", err)
	}
	name := fmt.Sprintf("%s-%s-%s.jsonl", d.Prefix, time.Now().UTC().Format("20060102T150405.000000"), hex.EncodeToString(suffix[:]))
	if !strings.Contains(name, "://") {
		if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
			return fmt.Errorf("dead-letter directory: %w", err)
		}
	}
	fs, err := sharedFilesystem(name)
	if err != nil {
		return fmt.Errorf("dead-letter file %s: %w", name, err)
	}
	w, err := fs.OpenWrite(ctx, name)
	if err != nil {
		return fmt.Errorf("create dead-letter file %s: %w", name, err)
	}
	bw := bufio.NewWriter(w)
	if err := writeLetters(bw, letters); err != nil {
		w.Close()
		return fmt.Errorf("write dead-letter file %s: %w", name, err)
	}
	if err := bw.Flush(); err != nil {
		w.Close()
		return fmt.Errorf("write dead-letter file %s: %w", name, err)
	}
	if s, ok := w.(interface{ Sync() error }); ok {
		if err := s.Sync(); err != nil {
			w.Close()
			return fmt.Errorf("sync dead-letter file %s: %w", name, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("close dead-letter file %s: %w", name, err)
	}
	return nil
}

// filesystems are the dead-letter file systems of this process, one per
// scheme (gs, or the local default), made on first use and never closed: a
// GCS client is safe for concurrent use, and making one per write (a new
// HTTP transport and credentials lookup each time) was most of a dead
// letter's cost.
var filesystems struct {
	sync.Mutex
	byScheme map[string]filesystem.Interface
}

// sharedFilesystem returns this process's file system for name's scheme.
// It is made with a background context, as it outlives the bundle that
// asks for it first.
func sharedFilesystem(name string) (filesystem.Interface, error) {
	scheme := "default"
	if i := strings.Index(name, "://"); i > 0 {
		scheme = name[:i]
	}
	filesystems.Lock()
	defer filesystems.Unlock()
	if fs, ok := filesystems.byScheme[scheme]; ok {
		return fs, nil
	}
	fs, err := filesystem.New(context.Background(), name)
	if err != nil {
		return nil, err
	}
	if filesystems.byScheme == nil {
		filesystems.byScheme = map[string]filesystem.Interface{}
	}
	filesystems.byScheme[scheme] = fs
	return fs, nil
}

func writeLetters(w interface{ Write([]byte) (int, error) }, letters []transforms.DeadLetter) error {
	enc := json.NewEncoder(w)
	for _, l := range letters {
		if err := enc.Encode(l); err != nil {
			return err
		}
	}
	return nil
}

// ReadDeadLetters reads every dead letter written under prefix on the local
// file system, for tests and tools.
func ReadDeadLetters(prefix string) ([]transforms.DeadLetter, error) {
	files, err := filepath.Glob(prefix + "-*.jsonl")
	if err != nil {
		return nil, fmt.Errorf("list dead-letter files %s-*: %w", prefix, err)
	}
	var out []transforms.DeadLetter
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read dead letters: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		for dec.More() {
			var l transforms.DeadLetter
			if err := dec.Decode(&l); err != nil {
				return nil, fmt.Errorf("read dead letters of %s: %w", f, err)
			}
			out = append(out, l)
		}
	}
	return out, nil
}
