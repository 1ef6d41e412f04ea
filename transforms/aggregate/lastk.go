package aggregate

import (
	"cmp"
	"slices"

	"github.com/tandem-fp/tandem/schemas"
)

// timed is a canonical value at an event time.
type timed struct {
	t int64
	v schemas.Value
}

// lastKPartial keeps the k values with the latest event times, newest
// first (last_k); of values with equal event times the larger by
// compareValues comes first, so the first one is what last returns. With
// first set it keeps the k values with the earliest event times, oldest
// first, of equal times the smaller first (first_k, whose first one is
// what first returns). Equal values at equal times are kept as often as
// they occur. The kept list is a function of the multiset of events only:
// the k greatest (or least) by the total order (time, value).
type lastKPartial struct {
	typ   schemas.Type
	first bool
	k     int
	items []timed // in result order, at most k
}

func (p *lastKPartial) Op() schemas.Op {
	if p.first {
		return schemas.OpFirstK
	}
	return schemas.OpLastK
}

func (p *lastKPartial) fieldType() schemas.Type { return p.typ }

func (p *lastKPartial) Clone() Partial {
	c := *p
	c.items = slices.Clone(p.items)
	return &c
}

// before reports whether a comes before b in result order.
func (p *lastKPartial) before(a, b timed) bool {
	c := cmp.Compare(a.t, b.t)
	if c == 0 {
		c = compareValues(a.v, b.v)
	}
	if p.first {
		return c < 0
	}
	return c > 0
}

func (p *lastKPartial) Add(v schemas.Value, t int64) {
	if v.Type != p.typ {
		return
	}
	p.insert(timed{t, canonical(v, p.typ)})
}

// insert puts x in its place, dropping what falls beyond k.
func (p *lastKPartial) insert(x timed) {
	n := len(p.items)
	if n == p.k && !p.before(x, p.items[n-1]) {
		return
	}
	i := n
	for i > 0 && p.before(x, p.items[i-1]) {
		i--
	}
	if n < p.k {
		p.items = append(p.items, timed{})
	}
	copy(p.items[i+1:], p.items[i:])
	p.items[i] = x
}

func (p *lastKPartial) Merge(other Partial) error {
	o, ok := other.(*lastKPartial)
	if !ok || o == nil || o.typ != p.typ || o.first != p.first {
		return mismatch(p, other)
	}
	// Tiles written under another k merge into the smaller k: the result
	// is then the smaller k's, exactly, in any order of merges.
	p.k = min(p.k, o.k)
	if len(p.items) > p.k {
		p.items = p.items[:p.k]
	}
	src := o.items
	if o == p {
		src = slices.Clone(src)
	}
	for _, x := range src {
		if len(p.items) == p.k && !p.before(x, p.items[len(p.items)-1]) {
			break // src is in result order: nothing later gets in either
		}
		p.insert(x)
	}
	return nil
}

func (p *lastKPartial) Result() (schemas.Value, bool) {
	if len(p.items) == 0 {
		return schemas.Value{}, false
	}
	items := make([]schemas.Item, len(p.items))
	for i, x := range p.items {
		items[i] = schemas.ItemOf(x.v)
	}
	return schemas.CompositeValue(schemas.List, 0, items), true
}

func (p *lastKPartial) AppendBinary(b []byte) ([]byte, error) {
	b = appendHeader(b, p.Op(), p.typ)
	b = appendUvarint(b, uint64(p.k))
	b = appendUvarint(b, uint64(len(p.items)))
	for _, x := range p.items {
		b = appendVarint(b, x.t)
		b = appendValue(b, x.v)
	}
	return b, nil
}

func (p *lastKPartial) decodePayload(d *decoder) {
	k := d.uvarint()
	n := d.uvarint()
	if d.err != nil {
		return
	}
	if k < 1 || k > schemas.MaxK || n > k {
		d.fail("k %d with %d values, want k 1 to %d and at most k values", k, n, schemas.MaxK)
		return
	}
	p.k = int(k)
	p.items = make([]timed, 0, n)
	for range n {
		x := timed{t: d.varint()}
		x.v = d.value(p.typ)
		if d.err != nil {
			return
		}
		if m := len(p.items); m > 0 && p.before(x, p.items[m-1]) {
			d.fail("values out of order")
			return
		}
		p.items = append(p.items, x)
	}
}
