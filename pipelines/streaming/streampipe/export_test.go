package streampipe

import (
	"github.com/tandem-fp/tandem/schemas"
	"github.com/tandem-fp/tandem/schemas/bigtablestore"
)

// The Dataflow variant's DoFns, for tests that drive them with their own
// state and timer providers, bundles and failures.
type (
	EntityTilesFn = entityTilesFn
	TileWriterFn  = tileWriterFn
	SeqMutation   = seqMutation
	// DecodedMessage is what the stateful DoFn takes: an event decoded once
	// and its message's bytes.
	DecodedMessage = decodedMessage
)

// NewEntityTilesFn is the stateful DoFn WriteEntityTiles adds to a pipeline.
func NewEntityTilesFn(set *schemas.FeatureSet, bt bigtablestore.Config) *EntityTilesFn {
	return newEntityTilesFn(set, bt)
}

// NewTileWriterFn is the writer WriteEntityTiles adds after the Reshuffle.
func NewTileWriterFn(set *schemas.FeatureSet, bt bigtablestore.Config) *TileWriterFn {
	return newTileWriterFn(set, bt)
}
