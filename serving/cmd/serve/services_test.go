package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-fp/tandem/schemas"
)

func TestLoadServices(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "cards.yaml"), []byte(setYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	sets, err := schemas.LoadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	// No services/ directory: no services, no error.
	if svcs, err := loadServices(options{featuresets: paths{dir, filepath.Join(dir, "cards.yaml")}}, sets); err != nil || len(svcs) != 0 {
		t.Errorf("without services/: %v, %v; want none", svcs, err)
	}
	svcDir := filepath.Join(dir, schemas.ServicesDir)
	if err := os.Mkdir(svcDir, 0o700); err != nil {
		t.Fatal(err)
	}
	svc := "name: m\nfeatures: [{featureset: cards, features: [txn_count_1h]}]\n"
	if err := os.WriteFile(filepath.Join(svcDir, "m.yaml"), []byte(svc), 0o600); err != nil {
		t.Fatal(err)
	}
	svcs, err := loadServices(options{featuresets: paths{dir}}, sets)
	if err != nil || len(svcs) != 1 || svcs[0].Name != "m" {
		t.Fatalf("default services/ = %v, %v; want m", svcs, err)
	}
	other := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(other, []byte(strings.Replace(svc, "txn_count_1h", "txn_count_2h", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = loadServices(options{featuresets: paths{dir}, services: paths{other}}, sets)
	if err == nil || !strings.Contains(err.Error(), other+`:2: features[0].features[0]: feature set cards has no feature "txn_count_2h"`) {
		t.Errorf("--services bad.yaml error = %v, want its definition error (and services/ not loaded)", err)
	}
}

// TestShippedServices serves the shipped definitions: schemas/ and its
// services/.
func TestShippedServices(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "schemas")
	sets, err := schemas.LoadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	svcs, err := loadServices(options{featuresets: paths{dir}}, sets)
	if err != nil || len(svcs) != 1 || svcs[0].Name != "fraud_model" {
		t.Errorf("shipped services = %v, %v; want fraud_model", serviceNames(svcs), err)
	}
}
