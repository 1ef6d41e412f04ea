package aggregate

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
)

// benchCombos are the ops a feature set typically has, over the field types
// they typically aggregate.
var benchCombos = []combo{
	{schemas.OpCount, schemas.Null},
	{schemas.OpSum, schemas.Int64},
	{schemas.OpSum, schemas.Float64},
	{schemas.OpMin, schemas.Float64},
	{schemas.OpMax, schemas.Timestamp},
	{schemas.OpMean, schemas.Float64},
	{schemas.OpLast, schemas.String},
	{schemas.OpApproxCountDistinct, schemas.String},
	{schemas.OpStddev, schemas.Float64},
	{schemas.OpFirst, schemas.String},
	{schemas.OpLastK, schemas.String},
	{schemas.OpFirstK, schemas.String},
	{schemas.OpTopK, schemas.String},
	{schemas.OpApproxPercentile, schemas.Float64},
	{schemas.OpHistogram, schemas.String},
}

// benchParams are those of the example feature sets: the last 5
// merchants, the top 5, p50/p90/p99, 20 buckets.
var benchParams = Params{K: 5, Percentiles: []float64{0.5, 0.9, 0.99}, Buckets: 20}

func benchNew(b *testing.B, c combo) Partial {
	b.Helper()
	p, err := NewWith(c.op, c.typ, benchParams)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// tileEvents is a realistic tile: 20 events of one entity, amounts, and
// merchants from 20 distinct names.
const tileEvents = 20

func benchValues(t schemas.Type) []schemas.Value {
	r := rand.New(rand.NewPCG(1, 2))
	vs := make([]schemas.Value, tileEvents)
	for i := range vs {
		switch t {
		case schemas.String:
			vs[i] = schemas.StringValue(fmt.Sprintf("merchant-%02d", i))
		case schemas.Int64:
			vs[i] = schemas.Int64Value(r.Int64N(100_000))
		case schemas.Float64:
			vs[i] = schemas.Float64Value(float64(r.IntN(100_000)) / 100)
		case schemas.Timestamp:
			vs[i] = schemas.Value{Type: schemas.Timestamp, Int: 1_700_000_000_000_000 + int64(i)*1_000_000}
		}
	}
	return vs
}

// benchTile returns the partial of one tile, as read back from Bigtable.
func benchTile(b *testing.B, c combo) Partial {
	b.Helper()
	p := benchNew(b, c)
	for i, v := range benchValues(c.typ) {
		p.Add(v, int64(i))
	}
	return mustDecode(b, mustEncode(b, p))
}

func benchName(c combo) string {
	if c.op == schemas.OpCount {
		return string(c.op)
	}
	return string(c.op) + "/" + c.typ.String()
}

// BenchmarkAdd measures folding one event into a tile's partial.
func BenchmarkAdd(b *testing.B) {
	for _, c := range benchCombos {
		b.Run(benchName(c), func(b *testing.B) {
			vs := benchValues(c.typ)
			p := benchNew(b, c)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				p.Add(vs[i%tileEvents], int64(i))
				i++
			}
		})
	}
}

// BenchmarkMerge measures folding one tile into a window, as the server
// does for each tile it reads.
func BenchmarkMerge(b *testing.B) {
	for _, c := range benchCombos {
		b.Run(benchName(c), func(b *testing.B) {
			tile := benchTile(b, c)
			window := tile.Clone()
			b.ReportAllocs()
			for b.Loop() {
				if err := window.Merge(tile); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEncode measures encoding a tile into a reused buffer.
func BenchmarkEncode(b *testing.B) {
	for _, c := range benchCombos {
		b.Run(benchName(c), func(b *testing.B) {
			tile := benchTile(b, c)
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = tile.AppendBinary(buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(buf)), "bytes/tile")
		})
	}
}

// BenchmarkDecode measures decoding a tile.
func BenchmarkDecode(b *testing.B) {
	for _, c := range benchCombos {
		b.Run(benchName(c), func(b *testing.B) {
			enc := mustEncode(b, benchTile(b, c))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(enc); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
