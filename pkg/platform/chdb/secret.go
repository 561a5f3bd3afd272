package chdb

import (
	"os"
	"strings"
)

// readSecretFile reads a secret from a file, dropping the trailing newline editors add.
func readSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
