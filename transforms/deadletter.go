package transforms

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// deadLetterLine is a dead letter as one line of a dead-letter file, the
// same in every pipeline: the record as text in raw when it is valid UTF-8
// (a JSON event, a CSV line, a spine row), else base64 in raw_base64.
type deadLetterLine struct {
	Set       string `json:"set"`
	Stage     string `json:"stage"`
	Reason    string `json:"reason"`
	Raw       string `json:"raw,omitempty"`
	RawBase64 []byte `json:"raw_base64,omitempty"`
}

// MarshalJSON writes d as a line of a dead-letter file:
//
//	{"set":"card_activity","stage":"decode","reason":"...","raw":"{\"card_id\":..."}
//
// with raw_base64 in place of raw for a record that is not UTF-8 text.
func (d DeadLetter) MarshalJSON() ([]byte, error) {
	l := deadLetterLine{Set: d.Set, Stage: d.Stage, Reason: d.Reason}
	if utf8.Valid(d.Raw) {
		l.Raw = string(d.Raw)
	} else {
		l.RawBase64 = d.Raw
	}
	return json.Marshal(l)
}

// UnmarshalJSON reads a line MarshalJSON wrote.
func (d *DeadLetter) UnmarshalJSON(b []byte) error {
	var l deadLetterLine
	if err := json.Unmarshal(b, &l); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	if l.Raw != "" && l.RawBase64 != nil {
		return fmt.Errorf("dead letter: both raw and raw_base64")
	}
	*d = DeadLetter{Set: l.Set, Stage: l.Stage, Reason: l.Reason, Raw: l.RawBase64}
	if l.Raw != "" {
		d.Raw = []byte(l.Raw)
	}
	return nil
}
