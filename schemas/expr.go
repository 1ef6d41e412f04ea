package schemas

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Expr is a compiled expression of Tandem's small expression language, the
// language of a feature's `where:` filter (over event fields) and of a
// derived feature's `expr:` (over feature values). It is parsed and
// type-checked once, when a definition loads, and evaluated many times with
// Eval, which does not allocate.
//
// Grammar (lowest precedence first):
//
//	expr    = or
//	or      = and { "or" and }
//	and     = not { "and" not }
//	not     = "not" not | cmp
//	cmp     = sum [ ("==" | "!=" | "<" | "<=" | ">" | ">=") sum ]
//	        | sum "is" ["not"] "null"
//	        | sum ["not"] "in" "(" literal { "," literal } ")"
//	sum     = product { ("+" | "-") product }
//	product = unary { ("*" | "/") unary }
//	unary   = "-" unary | primary
//	primary = literal | name | "coalesce" "(" expr { "," expr } ")" | "(" expr ")"
//	literal = integer | decimal | string | "true" | "false"
//
// Strings are quoted with " or ' and take the escapes \\ \" \' \n \t.
// Numbers are decimal: an integer literal is int64, one with a fraction or
// an exponent float64; "-" before a literal negates it.
//
// Types: + - * take int64 or float64 (int64 with int64 gives int64, else
// float64); / always gives float64; the order comparisons take two numbers
// (int64 and float64 mix), two strings (byte order) or two timestamps; ==
// and != also take two bools; and, or and not take bools; `in` takes a
// list of literals of the operand's type; coalesce takes arguments of one
// type (int64 and float64 mix, giving float64).
//
// Nulls: a missing field or a feature without a value is null. Arithmetic,
// comparisons and `in` with a null operand are null; `and` and `or` follow
// SQL's three-valued logic (false and null = false, true or null = true,
// otherwise null); not null is null; `x is null` and `x is not null` are
// never null; coalesce returns its first non-null argument. Division by
// zero, an int64 overflow and a float result that is not finite (Inf, NaN)
// are null too. A filter keeps an event only when it is true: null drops
// it, as SQL's WHERE does.
type Expr struct {
	src  string
	root *exprNode
	typ  Type
	refs []int // distinct slots the expression reads, in first-use order
}

// exprKind is the kind of an expression node.
type exprKind uint8

const (
	kLit exprKind = iota
	kRef
	kNot
	kNeg
	kAnd
	kOr
	kCmp
	kArith
	kIsNull
	kIn
	kCoalesce
)

type exprNode struct {
	kind  exprKind
	op    string // kCmp: == != < <= > >=; kArith: + - * /
	typ   Type   // the node's result type
	val   Value  // kLit
	slot  int    // kRef
	not   bool   // kIsNull: is not null; kIn: not in
	float bool   // kArith, kCmp, kCoalesce: compute in float64
	args  []*exprNode
	list  []Value // kIn
}

// ExprEnv resolves the names an expression may use when it is compiled: a
// name's slot (its index in the values Eval is given) and its type, or ok
// false for an unknown name. Names lists the known names, for suggestions.
type ExprEnv struct {
	Lookup func(name string) (slot int, t Type, ok bool)
	Names  []string
}

// CompileExpr parses and type-checks src in env. want, unless Null, is the
// type the result must have. The error says what is wrong and where, as
// `unknown name "stauts" at column 1 (did you mean status?)`.
func CompileExpr(src string, env ExprEnv, want Type) (*Expr, error) {
	p := &exprParser{src: src, env: env}
	if err := p.lex(); err != nil {
		return nil, err
	}
	if len(p.toks) == 1 {
		return nil, fmt.Errorf("empty expression")
	}
	root, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.errAt(t, "unexpected %s", t.describe())
	}
	if want != Null && root.typ != want && !(want == Float64 && root.typ == Int64) {
		return nil, fmt.Errorf("expression has type %s, want %s", root.typ, want)
	}
	x := &Expr{src: src, root: root, typ: root.typ}
	seen := map[int]bool{}
	walk(root, func(n *exprNode) {
		if n.kind == kRef && !seen[n.slot] {
			seen[n.slot] = true
			x.refs = append(x.refs, n.slot)
		}
	})
	return x, nil
}

func walk(n *exprNode, f func(*exprNode)) {
	f(n)
	for _, a := range n.args {
		walk(a, f)
	}
}

// String returns the expression's source.
func (x *Expr) String() string { return x.src }

// Equal reports whether x and y have the same source (both nil counts); it
// lets go-cmp compare definitions holding expressions.
func (x *Expr) Equal(y *Expr) bool {
	if x == nil || y == nil {
		return x == y
	}
	return x.src == y.src
}

// Type is the type of the expression's value.
func (x *Expr) Type() Type { return x.typ }

// Refs lists the slots the expression reads, each once, in the order they
// first appear.
func (x *Expr) Refs() []int { return x.refs }

// Eval evaluates the expression over vals, indexed by the slots of the
// environment it was compiled in. It does not allocate.
func (x *Expr) Eval(vals []Value) Value { return eval(x.root, vals) }

// True reports whether the expression (of type bool) is true over vals:
// false and null are not.
func (x *Expr) True(vals []Value) bool {
	v := eval(x.root, vals)
	return v.Type == Bool && v.Int != 0
}

var (
	trueValue  = BoolValue(true)
	falseValue = BoolValue(false)
)

func eval(n *exprNode, vals []Value) Value {
	switch n.kind {
	case kLit:
		return n.val
	case kRef:
		return vals[n.slot]
	case kNot:
		v := eval(n.args[0], vals)
		if v.Type == Null {
			return v
		}
		return BoolValue(v.Int == 0)
	case kNeg:
		v := eval(n.args[0], vals)
		switch v.Type {
		case Int64:
			if v.Int == math.MinInt64 {
				return Value{}
			}
			v.Int = -v.Int
		case Float64:
			v.Float = -v.Float
		}
		return v
	case kAnd, kOr:
		// Kleene logic: the deciding value (false for and, true for or)
		// wins over null.
		decide := int64(0)
		if n.kind == kOr {
			decide = 1
		}
		a := eval(n.args[0], vals)
		if a.Type == Bool && a.Int == decide {
			return a
		}
		b := eval(n.args[1], vals)
		if b.Type == Bool && b.Int == decide {
			return b
		}
		if a.Type == Null || b.Type == Null {
			return Value{}
		}
		return b
	case kIsNull:
		return BoolValue((eval(n.args[0], vals).Type == Null) != n.not)
	case kIn:
		var tv Value
		v, ok := inPlace(n.args[0], vals)
		if !ok {
			tv = eval(n.args[0], vals)
			v = &tv
		}
		if v.Type == Null {
			return Value{}
		}
		for i := range n.list {
			if compareValues(v, &n.list[i], n.float) == 0 {
				return BoolValue(!n.not)
			}
		}
		return BoolValue(n.not)
	case kCoalesce:
		for _, a := range n.args {
			if v := eval(a, vals); v.Type != Null {
				if n.float && v.Type == Int64 {
					return Float64Value(float64(v.Int))
				}
				return v
			}
		}
		return Value{}
	case kCmp:
		// Literals and references are compared in place, not copied.
		var ta, tb Value
		a, ok := inPlace(n.args[0], vals)
		if !ok {
			ta = eval(n.args[0], vals)
			a = &ta
		}
		if a.Type == Null {
			return Value{}
		}
		b, ok := inPlace(n.args[1], vals)
		if !ok {
			tb = eval(n.args[1], vals)
			b = &tb
		}
		if b.Type == Null {
			return Value{}
		}
		c := compareValues(a, b, n.float)
		var r bool
		switch n.op {
		case "==":
			r = c == 0
		case "!=":
			r = c != 0
		case "<":
			r = c < 0
		case "<=":
			r = c <= 0
		case ">":
			r = c > 0
		case ">=":
			r = c >= 0
		}
		if r {
			return trueValue
		}
		return falseValue
	case kArith:
		a := eval(n.args[0], vals)
		if a.Type == Null {
			return a
		}
		b := eval(n.args[1], vals)
		if b.Type == Null {
			return b
		}
		if !n.float {
			return intArith(n.op, a.Int, b.Int)
		}
		var r float64
		x, y := a.AsFloat(), b.AsFloat()
		switch n.op {
		case "+":
			r = x + y
		case "-":
			r = x - y
		case "*":
			r = x * y
		case "/":
			if y == 0 {
				return Value{}
			}
			r = x / y
		}
		if math.IsInf(r, 0) || math.IsNaN(r) {
			return Value{}
		}
		return Float64Value(r)
	}
	return Value{}
}

// intArith computes a op b in int64, null on overflow.
func intArith(op string, a, b int64) Value {
	var r int64
	switch op {
	case "+":
		r = a + b
		if (a >= 0) == (b >= 0) && (r >= 0) != (a >= 0) {
			return Value{}
		}
	case "-":
		r = a - b
		if (a >= 0) != (b >= 0) && (r >= 0) != (a >= 0) {
			return Value{}
		}
	case "*":
		if a == 0 || b == 0 {
			return Int64Value(0)
		}
		r = a * b
		if r/b != a || (a == -1 && b == math.MinInt64) || (b == -1 && a == math.MinInt64) {
			return Value{}
		}
	}
	return Int64Value(r)
}

// inPlace returns the value of a literal or reference node without copying
// it, or ok false for another kind of node.
func inPlace(n *exprNode, vals []Value) (v *Value, ok bool) {
	switch n.kind {
	case kLit:
		return &n.val, true
	case kRef:
		return &vals[n.slot], true
	}
	return nil, false
}

// compareValues orders two non-null values of comparable types; asFloat
// compares numbers as float64.
func compareValues(a, b *Value, asFloat bool) int {
	switch {
	case asFloat:
		x, y := a.AsFloat(), b.AsFloat()
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	case a.Type == String:
		if a.Str == b.Str {
			return 0
		}
		return strings.Compare(a.Str, b.Str)
	}
	switch {
	case a.Int < b.Int:
		return -1
	case a.Int > b.Int:
		return 1
	}
	return 0
}

// The lexer.

type tokKind uint8

const (
	tEOF tokKind = iota
	tName
	tInt
	tFloat
	tString
	tOp // punctuation and operators
)

type token struct {
	kind tokKind
	text string // tName, tOp: the text; tString: the unquoted value
	pos  int    // byte offset in the source
	val  Value  // tInt, tFloat, tString
}

func (t token) describe() string {
	switch t.kind {
	case tEOF:
		return "end of expression"
	case tString:
		return strconv.Quote(t.val.Str)
	case tInt, tFloat:
		return t.val.String()
	}
	return strconv.Quote(t.text)
}

type exprParser struct {
	src  string
	env  ExprEnv
	toks []token
	i    int
}

func (p *exprParser) errAt(t token, format string, args ...any) error {
	return fmt.Errorf("%s at column %d", fmt.Sprintf(format, args...), t.pos+1)
}

func (p *exprParser) lex() error {
	s := p.src
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			j := i + 1
			for j < len(s) && (s[j] == '_' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z' || s[j] >= '0' && s[j] <= '9') {
				j++
			}
			p.toks = append(p.toks, token{kind: tName, text: s[i:j], pos: i})
			i = j
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j, isFloat := i, false
			for j < len(s) && (s[j] >= '0' && s[j] <= '9' || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				(s[j] == '+' || s[j] == '-') && (s[j-1] == 'e' || s[j-1] == 'E')) {
				if s[j] < '0' || s[j] > '9' {
					isFloat = true
				}
				j++
			}
			t := token{kind: tInt, text: s[i:j], pos: i}
			if isFloat {
				f, err := strconv.ParseFloat(t.text, 64)
				if err != nil || math.IsInf(f, 0) {
					return fmt.Errorf("bad number %q at column %d", t.text, i+1)
				}
				t.kind, t.val = tFloat, Float64Value(f)
			} else {
				n, err := strconv.ParseInt(t.text, 10, 64)
				if err != nil {
					return fmt.Errorf("bad integer %q at column %d (want one within int64)", t.text, i+1)
				}
				t.val = Int64Value(n)
			}
			p.toks = append(p.toks, t)
			i = j
		case c == '"' || c == '\'':
			var b strings.Builder
			j := i + 1
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] != '\\' {
					b.WriteByte(s[j])
					continue
				}
				if j+1 == len(s) {
					break
				}
				j++
				switch s[j] {
				case '\\', '"', '\'':
					b.WriteByte(s[j])
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					return fmt.Errorf("bad escape \\%c at column %d (want \\\\, \\\", \\', \\n or \\t)", s[j], j)
				}
			}
			if j >= len(s) {
				return fmt.Errorf("unterminated string at column %d", i+1)
			}
			p.toks = append(p.toks, token{kind: tString, pos: i, val: StringValue(b.String())})
			i = j + 1
		default:
			op := ""
			for _, o := range [...]string{"==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "(", ")", ","} {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			switch {
			case op != "":
			case c == '=':
				return fmt.Errorf("unexpected \"=\" at column %d (use == to compare)", i+1)
			case strings.HasPrefix(s[i:], "&&"), strings.HasPrefix(s[i:], "||"), c == '!':
				return fmt.Errorf("unexpected %q at column %d (use and, or, not)", s[i:i+1], i+1)
			default:
				return fmt.Errorf("unexpected character %q at column %d", rune(s[i]), i+1)
			}
			p.toks = append(p.toks, token{kind: tOp, text: op, pos: i})
			i += len(op)
		}
	}
	p.toks = append(p.toks, token{kind: tEOF, pos: len(s)})
	return nil
}

func (p *exprParser) peek() token { return p.toks[p.i] }

func (p *exprParser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

// is reports whether the next token is the keyword or operator s.
func (p *exprParser) is(s string) bool {
	t := p.peek()
	return (t.kind == tName || t.kind == tOp) && t.text == s
}

func (p *exprParser) accept(s string) bool {
	if p.is(s) {
		p.i++
		return true
	}
	return false
}

func (p *exprParser) expect(s string) error {
	if !p.accept(s) {
		t := p.peek()
		return p.errAt(t, "want %q, got %s", s, t.describe())
	}
	return nil
}

// The keywords; none may be a name.
var exprKeywords = map[string]bool{"and": true, "or": true, "not": true, "is": true, "null": true, "true": true, "false": true, "in": true, "coalesce": true}

func (p *exprParser) or() (*exprNode, error) {
	return p.logic("or", kOr, p.and)
}

func (p *exprParser) and() (*exprNode, error) {
	return p.logic("and", kAnd, p.not)
}

func (p *exprParser) logic(word string, kind exprKind, sub func() (*exprNode, error)) (*exprNode, error) {
	a, err := sub()
	if err != nil {
		return nil, err
	}
	for p.is(word) {
		t := p.next()
		b, err := sub()
		if err != nil {
			return nil, err
		}
		if a.typ != Bool || b.typ != Bool {
			return nil, p.errAt(t, "%s needs bool operands, got %s and %s", word, a.typ, b.typ)
		}
		a = &exprNode{kind: kind, typ: Bool, args: []*exprNode{a, b}}
	}
	return a, nil
}

func (p *exprParser) not() (*exprNode, error) {
	if p.is("not") {
		t := p.next()
		a, err := p.not()
		if err != nil {
			return nil, err
		}
		if a.typ != Bool {
			return nil, p.errAt(t, "not needs a bool operand, got %s", a.typ)
		}
		return &exprNode{kind: kNot, typ: Bool, args: []*exprNode{a}}, nil
	}
	return p.cmp()
}

func (p *exprParser) cmp() (*exprNode, error) {
	a, err := p.sum()
	if err != nil {
		return nil, err
	}
	switch t := p.peek(); {
	case p.is("is"):
		p.next()
		neg := p.accept("not")
		if err := p.expect("null"); err != nil {
			return nil, err
		}
		return &exprNode{kind: kIsNull, typ: Bool, not: neg, args: []*exprNode{a}}, nil
	case p.is("in") || p.is("not"):
		neg := p.accept("not")
		if err := p.expect("in"); err != nil {
			return nil, err
		}
		return p.in(a, neg, t)
	case t.kind == tOp && (t.text == "==" || t.text == "!=" || t.text == "<" || t.text == "<=" || t.text == ">" || t.text == ">="):
		p.next()
		b, err := p.sum()
		if err != nil {
			return nil, err
		}
		float, err := comparable(a.typ, b.typ, t.text)
		if err != nil {
			return nil, p.errAt(t, "%v", err)
		}
		return &exprNode{kind: kCmp, op: t.text, typ: Bool, float: float, args: []*exprNode{a, b}}, nil
	}
	return a, nil
}

// comparable reports whether types a and b can be compared with op and
// whether the comparison is in float64.
func comparable(a, b Type, op string) (float bool, err error) {
	switch {
	case a.Numeric() && b.Numeric():
		return a != b || a == Float64, nil
	case a != b:
		return false, fmt.Errorf("cannot compare %s with %s", a, b)
	case a == Bool && op != "==" && op != "!=":
		return false, fmt.Errorf("bools take == and != only, not %s", op)
	}
	return false, nil
}

func (p *exprParser) in(a *exprNode, neg bool, at token) (*exprNode, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	n := &exprNode{kind: kIn, typ: Bool, not: neg, args: []*exprNode{a}}
	for {
		t := p.peek()
		l, err := p.unary()
		if err != nil {
			return nil, err
		}
		if l.kind != kLit {
			return nil, p.errAt(t, "in takes a list of literals")
		}
		float, err := comparable(a.typ, l.typ, "==")
		if err != nil {
			return nil, p.errAt(t, "%v", err)
		}
		n.float = n.float || float
		n.list = append(n.list, l.val)
		if !p.accept(",") {
			break
		}
	}
	if n.float { // compare every element in float64 when any needs it
		for _, l := range n.list {
			if l.Type != Float64 && l.Type != Int64 {
				return nil, p.errAt(at, "in mixes numbers and other types")
			}
		}
	}
	return n, p.expect(")")
}

func (p *exprParser) sum() (*exprNode, error) {
	return p.arith(p.product, "+", "-")
}

func (p *exprParser) product() (*exprNode, error) {
	return p.arith(p.unary, "*", "/")
}

func (p *exprParser) arith(sub func() (*exprNode, error), ops ...string) (*exprNode, error) {
	a, err := sub()
	if err != nil {
		return nil, err
	}
	for {
		t := p.peek()
		if t.kind != tOp || (t.text != ops[0] && t.text != ops[1]) {
			return a, nil
		}
		p.next()
		b, err := sub()
		if err != nil {
			return nil, err
		}
		if !a.typ.Numeric() || !b.typ.Numeric() {
			return nil, p.errAt(t, "%s needs numbers, got %s and %s", t.text, a.typ, b.typ)
		}
		n := &exprNode{kind: kArith, op: t.text, typ: Int64, args: []*exprNode{a, b}}
		if a.typ == Float64 || b.typ == Float64 || t.text == "/" {
			n.typ, n.float = Float64, true
		}
		a = n
	}
}

func (p *exprParser) unary() (*exprNode, error) {
	if p.is("-") {
		t := p.next()
		a, err := p.unary()
		if err != nil {
			return nil, err
		}
		if !a.typ.Numeric() {
			return nil, p.errAt(t, "- needs a number, got %s", a.typ)
		}
		if a.kind == kLit { // fold, so that -5 is a literal (for in)
			if v := eval(&exprNode{kind: kNeg, args: []*exprNode{a}}, nil); v.Type != Null {
				return &exprNode{kind: kLit, typ: a.typ, val: v}, nil
			}
		}
		return &exprNode{kind: kNeg, typ: a.typ, args: []*exprNode{a}}, nil
	}
	return p.primary()
}

func (p *exprParser) primary() (*exprNode, error) {
	t := p.next()
	switch t.kind {
	case tInt, tFloat, tString:
		return &exprNode{kind: kLit, typ: t.val.Type, val: t.val}, nil
	case tOp:
		if t.text == "(" {
			a, err := p.or()
			if err != nil {
				return nil, err
			}
			return a, p.expect(")")
		}
	case tName:
		switch t.text {
		case "true", "false":
			return &exprNode{kind: kLit, typ: Bool, val: BoolValue(t.text == "true")}, nil
		case "null":
			return nil, p.errAt(t, "null is not a value here (test with `is null`, default with coalesce)")
		case "coalesce":
			return p.coalesce(t)
		}
		if exprKeywords[t.text] {
			break
		}
		slot, typ, ok := p.env.Lookup(t.text)
		if !ok {
			hint := ""
			if s := suggest(t.text, p.env.Names); s != "" {
				hint = fmt.Sprintf(" (did you mean %s?)", s)
			}
			return nil, fmt.Errorf("unknown name %q at column %d%s", t.text, t.pos+1, hint)
		}
		switch typ {
		case String, Int64, Float64, Bool, Timestamp:
		default:
			return nil, p.errAt(t, "%q has type %s, which expressions cannot use", t.text, typ)
		}
		return &exprNode{kind: kRef, typ: typ, slot: slot}, nil
	}
	return nil, p.errAt(t, "unexpected %s", t.describe())
}

func (p *exprParser) coalesce(at token) (*exprNode, error) {
	if err := p.expect("("); err != nil {
		return nil, err
	}
	n := &exprNode{kind: kCoalesce}
	for {
		a, err := p.or()
		if err != nil {
			return nil, err
		}
		n.args = append(n.args, a)
		if !p.accept(",") {
			break
		}
	}
	if err := p.expect(")"); err != nil {
		return nil, err
	}
	n.typ = n.args[0].typ
	for _, a := range n.args[1:] {
		switch {
		case a.typ == n.typ:
		case a.typ.Numeric() && n.typ.Numeric():
			n.typ, n.float = Float64, true
		default:
			return nil, p.errAt(at, "coalesce needs arguments of one type, got %s and %s", n.typ, a.typ)
		}
	}
	return n, nil
}
