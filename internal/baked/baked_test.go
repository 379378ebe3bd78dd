package baked

import (
	"errors"
	"strings"
	"testing"
)

const digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

func TestParse(t *testing.T) {
	good := `{"schemaVersion":1,"role":"api","version":"v1","registry":"10.250.0.1:8766/codelab","images":[{"ref":"10.250.0.1:8766/codelab/api:v1","digest":"` + digestA + `"}]}`
	b, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := b.Digest("10.250.0.1:8766/codelab/api:v1"); !ok || d != digestA {
		t.Errorf("Digest = %s %v", d, ok)
	}
	if _, ok := b.Digest("10.250.0.1:8766/codelab/api:v2"); ok {
		t.Error("a ref that is not baked has a digest")
	}
	for name, tc := range map[string]struct{ in, field string }{
		"not json":       {`{"schemaVersion":1,`, "json"},
		"newer schema":   {strings.Replace(good, `"schemaVersion":1`, `"schemaVersion":2`, 1), "schemaVersion"},
		"no schema":      {strings.Replace(good, `"schemaVersion":1,`, ``, 1), "schemaVersion"},
		"no version":     {strings.Replace(good, `"version":"v1",`, ``, 1), "version"},
		"no images":      {`{"schemaVersion":1,"role":"api","version":"v1","registry":"r","images":[]}`, "images"},
		"bad digest":     {strings.Replace(good, digestA, "sha256:abc", 1), "images[0].digest"},
		"digest not hex": {strings.Replace(good, digestA, "sha256:"+strings.Repeat("g", 64), 1), "images[0].digest"},
		"no ref":         {strings.Replace(good, `"ref":"10.250.0.1:8766/codelab/api:v1",`, ``, 1), "images[0].ref"},
	} {
		_, err := Parse([]byte(tc.in))
		var be *Error
		if !errors.As(err, &be) || be.Field != tc.field {
			t.Errorf("%s: err = %v, want an Error on %s", name, err, tc.field)
		}
	}
}

func TestJSONRoundTrips(t *testing.T) {
	b := Baked{SchemaVersion: SchemaVersion, Role: "web", Version: "v2", Registry: "r.example/codelab",
		Images: []Image{{Ref: "r.example/codelab/web:v2", Digest: digestA}}}
	out, err := b.JSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(out), "}\n") || !strings.Contains(string(out), "\n  \"role\": \"web\"") {
		t.Errorf("JSON = %s, want indented with a final newline", out)
	}
	got, err := Parse(out)
	if err != nil || got.Role != b.Role || got.Version != b.Version || got.Registry != b.Registry || len(got.Images) != 1 || got.Images[0] != b.Images[0] {
		t.Fatalf("Parse(JSON()) = %+v, %v; want %+v", got, err, b)
	}
}
