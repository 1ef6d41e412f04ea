package transforms

import (
	"encoding/json"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDeadLetterJSON checks the one line format of every pipeline's
// dead-letter files: the record as text when it is UTF-8, in base64 when
// it is not, and back.
func TestDeadLetterJSON(t *testing.T) {
	for _, c := range []struct {
		d    DeadLetter
		line string
	}{
		{DeadLetter{Set: "cards", Stage: StageDecode, Reason: "bad json", Raw: []byte(`{"card_id":"c_1",`)},
			`{"set":"cards","stage":"decode","reason":"bad json","raw":"{\"card_id\":\"c_1\","}`},
		{DeadLetter{Set: "cards", Stage: StageLate, Reason: "late", Raw: []byte("café")},
			`{"set":"cards","stage":"late","reason":"late","raw":"café"}`},
		{DeadLetter{Set: "cards", Stage: StageDecode, Reason: "not UTF-8", Raw: []byte{0xff, 0xfe, 'x'}},
			`{"set":"cards","stage":"decode","reason":"not UTF-8","raw_base64":"//54"}`},
		{DeadLetter{Set: "training", Stage: "spine", Reason: "empty"},
			`{"set":"training","stage":"spine","reason":"empty"}`},
	} {
		b, err := json.Marshal(c.d)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != c.line {
			t.Errorf("Marshal(%+v) = %s, want %s", c.d, b, c.line)
		}
		var back DeadLetter
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if diff := cmp.Diff(c.d, back); diff != "" {
			t.Errorf("%s read back (-want +got):\n%s", b, diff)
		}
	}
	var d DeadLetter
	if err := json.Unmarshal([]byte(`{"set":"s","raw":"a","raw_base64":"YQ=="}`), &d); err == nil {
		t.Error("a line with both raw and raw_base64 was accepted")
	}
}
