package aggregate

import (
	"slices"
	"sort"
	"strings"

	"github.com/tandem-fp/tandem/schemas"
)

// bucket is one histogram bucket: a string value and its count.
type bucket struct {
	s string
	n int64
}

// histogramPartial counts the values of a string field by value, in at
// most b buckets: the counts of the b bytewise-smallest distinct values,
// exactly, and in overflow the number of all other values. That is a
// function of the multiset of values only (a value dropped from some part
// has b smaller ones there, hence in the whole), so the histogram is exact
// in any order of adds and merges.
type histogramPartial struct {
	b        int
	buckets  []bucket // bytewise by s, counts > 0, at most b
	overflow int64
	spare    []bucket // Merge's scratch, never shared with a clone
}

func (p *histogramPartial) Op() schemas.Op          { return schemas.OpHistogram }
func (p *histogramPartial) fieldType() schemas.Type { return schemas.String }

func (p *histogramPartial) Clone() Partial {
	c := *p
	c.buckets = slices.Clone(p.buckets)
	c.spare = nil
	return &c
}

func (p *histogramPartial) Add(v schemas.Value, _ int64) {
	if v.Type != schemas.String {
		return
	}
	i, ok := sort.Find(len(p.buckets), func(i int) int { return strings.Compare(v.Str, p.buckets[i].s) })
	switch {
	case ok:
		p.buckets[i].n++
	case i == p.b:
		p.overflow++
	default:
		p.buckets = slices.Insert(p.buckets, i, bucket{v.Str, 1})
		p.trim()
	}
}

// trim moves the buckets beyond b into overflow.
func (p *histogramPartial) trim() {
	for _, x := range p.buckets[min(p.b, len(p.buckets)):] {
		p.overflow += x.n
	}
	p.buckets = p.buckets[:min(p.b, len(p.buckets))]
}

func (p *histogramPartial) Merge(other Partial) error {
	o, ok := other.(*histogramPartial)
	if !ok || o == nil {
		return mismatch(p, other)
	}
	// Tiles written under other bucket limits merge into the smallest.
	p.b = min(p.b, o.b)
	merged := mergeCounts(p.spare[:0], p.buckets, o.buckets, func(a, b bucket) int { return strings.Compare(a.s, b.s) },
		func(a, b bucket) bucket { return bucket{a.s, a.n + b.n} })
	p.buckets, p.spare = merged, p.buckets
	p.overflow += o.overflow
	p.trim()
	return nil
}

func (p *histogramPartial) Result() (schemas.Value, bool) {
	var items []schemas.Item
	if len(p.buckets) > 0 {
		items = make([]schemas.Item, len(p.buckets))
	}
	for i, x := range p.buckets {
		items[i] = schemas.Item{Type: schemas.String, Str: x.s, Count: x.n}
	}
	return schemas.CompositeValue(schemas.Histogram, p.overflow, items), true
}

func (p *histogramPartial) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, schemas.OpHistogram, schemas.String)
	b = appendUvarint(b, uint64(p.b))
	b = appendUvarint(b, uint64(p.overflow))
	b = appendUvarint(b, uint64(len(p.buckets)))
	for _, x := range p.buckets {
		b = appendString(b, x.s)
		b = appendUvarint(b, uint64(x.n))
	}
	return b, nil
}

func (p *histogramPartial) decodePayload(d *decoder) {
	nb := d.uvarint()
	overflow := d.count()
	n := d.uvarint()
	if d.err != nil {
		return
	}
	switch {
	case nb < 1 || nb > schemas.MaxBuckets || n > nb:
		d.fail("%d buckets with a limit of %d, want a limit of 1 to %d and at most that many buckets", n, nb, schemas.MaxBuckets)
		return
	case overflow > 0 && n != nb:
		d.fail("overflow %d with %d of %d buckets", overflow, n, nb)
		return
	}
	p.b, p.overflow = int(nb), overflow
	p.buckets = make([]bucket, 0, n)
	for range n {
		s := d.str()
		c := d.count()
		if d.err != nil {
			return
		}
		if c == 0 {
			d.fail("count 0")
			return
		}
		if m := len(p.buckets); m > 0 && p.buckets[m-1].s >= s {
			d.fail("buckets out of order")
			return
		}
		p.buckets = append(p.buckets, bucket{s, c})
	}
}
