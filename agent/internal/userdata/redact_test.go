package userdata

import (
	"strings"
	"testing"
)

// TestErrorsNeverRepeatASecretValue: a token that happens to hold the value
// of a secret set elsewhere on the line is shown by its length only.
func TestErrorsNeverRepeatASecretValue(t *testing.T) {
	for _, line := range []string{
		"abcdefgh12345 do_token=abcdefgh12345",
		"#codelab v1 role=api consul=abcdefgh12345 do_token=abcdefgh12345",
		"#codelab v1 role=api abcdefgh12345 gossip=abcdefgh12345",
		"#codelab v1 role=api abcdefgh12345=1 registry_token=abcdefgh12345",
	} {
		_, err := Parse(line)
		if err == nil {
			t.Fatalf("%q parsed", line)
		}
		if strings.Contains(err.Error(), "abcdefgh12345") {
			t.Errorf("%q: error %q repeats the secret", line, err)
		}
		if !strings.Contains(err.Error(), "<13 characters>") && !strings.Contains(err.Error(), "<20 characters>") && !strings.Contains(err.Error(), "<15 characters>") {
			t.Errorf("%q: error %q does not say how long the hidden token is", line, err)
		}
	}
}
