package pubsubread

import "testing"

// TestStarted: Started's channel closes at the first Setup of the named
// source, and Drain and Complete keep it.
func TestStarted(t *testing.T) {
	name := "started-test"
	ch := Started(name)
	select {
	case <-ch:
		t.Fatal("closed before any Setup")
	default:
	}
	Drain(name)
	publishComplete(name, &watermarkEstimator{}, 42)
	setUp(name)
	setUp(name) // a second worker's Setup: no second close
	select {
	case <-ch:
	default:
		t.Fatal("not closed after Setup")
	}
	if !draining(name) || Complete(name) != 42 {
		t.Errorf("draining %v, complete %d: want the drain and 42 kept", draining(name), Complete(name))
	}
	if Started(name) != ch {
		t.Error("Started returned another channel for the same name")
	}
}
