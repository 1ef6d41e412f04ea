package main

import "github.com/tandem-fp/tandem/schemas"

// loadServices loads the feature services to serve: from the --services
// paths when given, else from the services/ subdirectory
// (schemas.ServicesDir) of each --featureset directory that has one.
func loadServices(o options, sets []*schemas.FeatureSet) ([]*schemas.Service, error) {
	if len(o.services) > 0 {
		return schemas.LoadServices(sets, o.services...)
	}
	return schemas.LoadServicesBeside(sets, o.featuresets...)
}

// serviceNames returns the names of svcs, for the log.
func serviceNames(svcs []*schemas.Service) []string {
	names := make([]string, len(svcs))
	for i, s := range svcs {
		names[i] = s.Name
	}
	return names
}
