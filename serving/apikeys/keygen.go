package apikeys

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// KeyPrefix starts every generated key, so that a leaked one is easy to
// recognise (and to search for in code and logs).
const KeyPrefix = "tdk_"

// Generate returns a new random key: KeyPrefix and 32 bytes from
// crypto/rand in unpadded base64url (47 characters in all).
func Generate() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (it crashes the program instead)
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// Digest is the hex SHA-256 of key, as a key file's sha256 entries hold it.
func Digest(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// AppendNew generates a key, appends its entry (name, sha256, featuresets)
// to the key file at path (which it leaves with mode 0600), creating it
// when it does not exist, and returns the key, which is stored nowhere else: give it to the
// client. The file must be a valid key file in block style (as AppendNew
// writes it), and name new in it; the result is parsed again before it
// replaces the file, atomically.
func AppendNew(path, name string, featureSets []string) (string, error) {
	if name == "" || len(featureSets) == 0 {
		return "", errors.New("apikeys: give a name and at least one feature set")
	}
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		old = []byte("keys:\n")
	case err != nil:
		return "", fmt.Errorf("apikeys: %w", err)
	}
	before := 0
	if strings.TrimSpace(string(old)) != "keys:" {
		k, err := Parse(old)
		if err != nil {
			return "", fmt.Errorf("apikeys: %s is not a valid key file: %w", path, err)
		}
		for _, e := range k.entries {
			if e.p.Name == name {
				return "", fmt.Errorf("apikeys: %s already has a key named %q", path, name)
			}
		}
		before = k.Len()
	}
	key := Generate()
	var b bytes.Buffer
	b.Write(old)
	if len(old) > 0 && old[len(old)-1] != '\n' {
		b.WriteByte('\n')
	}
	quoted := make([]string, len(featureSets))
	for i, s := range featureSets {
		quoted[i] = strconv.Quote(s)
	}
	fmt.Fprintf(&b, "  - name: %s\n    sha256: %q\n    featuresets: [%s]\n", strconv.Quote(name), Digest(key), strings.Join(quoted, ", "))
	k, err := Parse(b.Bytes())
	if err != nil || k.Len() != before+1 {
		return "", fmt.Errorf("apikeys: cannot append to %s (not a block list under keys:?); add the entry by hand: name %q, sha256 of the new key, featuresets %v", path, name, featureSets)
	}
	if p, ok := k.Lookup(key); !ok || p.Name != name {
		return "", fmt.Errorf("apikeys: the appended entry of %s does not hold the new key", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keys-*")
	if err != nil {
		return "", fmt.Errorf("apikeys: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("apikeys: %w", err)
	}
	if _, err := tmp.Write(b.Bytes()); err != nil {
		tmp.Close()
		return "", fmt.Errorf("apikeys: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("apikeys: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("apikeys: %w", err)
	}
	return key, nil
}
