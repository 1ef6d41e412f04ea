package aggregate

import (
	"cmp"
	"slices"
	"sort"

	"github.com/tandem-fp/tandem/schemas"
)

// TopKCapacity is how many counters top_k with k keeps: 8k, at least 128.
// Changing it changes what an encoding means and takes a new format
// version.
func TopKCapacity(k int) int { return max(128, 8*k) }

// counted is a canonical value and its count.
type counted struct {
	v schemas.Value
	n int64
}

// topKPartial is a Misra-Gries summary (the mergeable form of Agarwal et
// al., "Mergeable summaries", 2012) with c = TopKCapacity(k) counters,
// kept in canonical order of their values.
//
// While the events hold at most c distinct values the counters are their
// exact counts, in any order of adds and merges. Beyond that, adding a
// value that has no counter when all c are taken, or merging summaries
// with more than c values between them, subtracts the (c+1)-th largest
// count from every counter and drops those that reach zero. Every counter
// then underestimates its value's count by at most (N − S)/(c+1) ≤
// N/(c+1), where N is the number of values added and S the sum of the
// counters, and every value that occurs more than N/(c+1) times keeps a
// counter; this bound holds for any merge tree.
//
// Merge adds the counters exactly and leaves the reduction to Result and
// the encoding (and to a merge past MergeSlack times the capacity), so
// the value of a window — the merge of its tiles — does not depend on the
// order the tiles are merged in: the server (batch cells, then stream
// cells) and the training pipeline (newest tile first) get the same
// answer. Add too keeps exact counts up to MergeSlack times the capacity,
// so a tile's encoding is a function of the values added to it, not of
// their order, unless the tile holds more than that many distinct values
// (or was encoded and decoded between adds: a stream seeded from a stored
// tile). Memory stays bounded: at most 64c counters per partial.
type topKPartial struct {
	typ   schemas.Type
	k     int
	items []counted // by compareValues of v, counts > 0, at most capacity
	spare []counted // Merge's scratch, never shared with a clone
}

func (p *topKPartial) Op() schemas.Op          { return schemas.OpTopK }
func (p *topKPartial) fieldType() schemas.Type { return p.typ }

func (p *topKPartial) Clone() Partial {
	c := *p
	c.items = slices.Clone(p.items)
	c.spare = nil
	return &c
}

func (p *topKPartial) find(v schemas.Value) (int, bool) {
	return sort.Find(len(p.items), func(i int) int { return compareValues(v, p.items[i].v) })
}

func (p *topKPartial) Add(v schemas.Value, _ int64) {
	if v.Type != p.typ {
		return
	}
	c := canonical(v, p.typ)
	i, ok := p.find(c)
	if ok {
		p.items[i].n++
		return
	}
	p.items = slices.Insert(p.items, i, counted{c, 1})
	if len(p.items) > topKMergeSlack*TopKCapacity(p.k) {
		p.reduce() // bound the memory of a tile of very many distinct values
	}
}

func (p *topKPartial) Merge(other Partial) error {
	o, ok := other.(*topKPartial)
	if !ok || o == nil || o.typ != p.typ {
		return mismatch(p, other)
	}
	p.k = min(p.k, o.k)
	merged := mergeCounts(p.spare[:0], p.items, o.items, func(a, b counted) int { return compareValues(a.v, b.v) },
		func(a, b counted) counted { return counted{a.v, a.n + b.n} })
	p.items, p.spare = merged, p.items
	if len(p.items) > topKMergeSlack*TopKCapacity(p.k) {
		p.reduce() // bound the memory of a merge of very many wide tiles
	}
	return nil
}

// topKMergeSlack bounds a summary before Result or the encoding reduce
// it: 64 times the capacity (8,192 counters for k ≤ 16), more than the
// tiles of a 7-day window of 3-hour tiles (56) each at capacity hold.
const topKMergeSlack = 64

// reduced returns p brought to its capacity, p itself when it is.
func (p *topKPartial) reduced() *topKPartial {
	if len(p.items) <= TopKCapacity(p.k) {
		return p
	}
	c := &topKPartial{typ: p.typ, k: p.k, items: slices.Clone(p.items)}
	c.reduce()
	return c
}

// reduce brings the summary back to its capacity: it subtracts the
// (c+1)-th largest count from every counter and drops those not positive.
func (p *topKPartial) reduce() {
	c := TopKCapacity(p.k)
	if len(p.items) <= c {
		return
	}
	counts := make([]int64, len(p.items))
	for i, x := range p.items {
		counts[i] = x.n
	}
	slices.SortFunc(counts, func(a, b int64) int { return cmp.Compare(b, a) })
	cut := counts[c]
	for i := range p.items {
		p.items[i].n -= cut
	}
	p.items = slices.DeleteFunc(p.items, func(x counted) bool { return x.n <= 0 })
}

// Result returns the at most k most frequent values with their counts,
// the highest count first, equal counts by compareValues.
func (p *topKPartial) Result() (schemas.Value, bool) {
	if len(p.items) == 0 {
		return schemas.Value{}, false
	}
	top := slices.Clone(p.reduced().items)
	slices.SortStableFunc(top, func(a, b counted) int { return cmp.Compare(b.n, a.n) })
	top = top[:min(p.k, len(top))]
	items := make([]schemas.Item, len(top))
	for i, x := range top {
		items[i] = schemas.ItemOf(x.v)
		items[i].Count = x.n
	}
	return schemas.CompositeValue(schemas.Counts, 0, items), true
}

func (p *topKPartial) AppendBinary(b []byte) ([]byte, error) {
	p = p.reduced()
	b = appendHeader(b, schemas.OpTopK, p.typ)
	b = appendUvarint(b, uint64(p.k))
	b = appendUvarint(b, uint64(len(p.items)))
	for _, x := range p.items {
		b = appendValue(b, x.v)
		b = appendUvarint(b, uint64(x.n))
	}
	return b, nil
}

func (p *topKPartial) decodePayload(d *decoder) {
	k := d.uvarint()
	n := d.uvarint()
	if d.err != nil {
		return
	}
	if k < 1 || k > schemas.MaxK || n > uint64(TopKCapacity(int(k))) {
		d.fail("k %d with %d counters, want k 1 to %d and at most %d counters", k, n, schemas.MaxK, TopKCapacity(int(min(k, schemas.MaxK))))
		return
	}
	p.k = int(k)
	p.items = make([]counted, 0, n)
	for range n {
		v := d.value(p.typ)
		c := d.count()
		if d.err != nil {
			return
		}
		if c == 0 {
			d.fail("count 0")
			return
		}
		if m := len(p.items); m > 0 && compareValues(p.items[m-1].v, v) >= 0 {
			d.fail("values out of order")
			return
		}
		p.items = append(p.items, counted{v, c})
	}
}

// mergeCounts appends to dst the merge of a and b, both sorted by cmp
// without repeats, combining the elements that compare equal with add.
func mergeCounts[T any](dst, a, b []T, cmp func(T, T) int, add func(T, T) T) []T {
	dst = slices.Grow(dst, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		var c int
		switch {
		case j == len(b):
			c = -1
		case i == len(a):
			c = 1
		default:
			c = cmp(a[i], b[j])
		}
		switch {
		case c < 0:
			dst = append(dst, a[i])
			i++
		case c > 0:
			dst = append(dst, b[j])
			j++
		default:
			dst = append(dst, add(a[i], b[j]))
			i++
			j++
		}
	}
	return dst
}
