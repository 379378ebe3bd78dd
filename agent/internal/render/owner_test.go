package render

import (
	"context"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/codelab-app/infra/agent/internal/fsutil"
)

// Every file of Consul's folder is Consul's to read: it is rendered with
// the consul consumer, so it is written owned by the consul user. A file
// added there later gets that owner without code of its own.
func TestConsulFilesAreRenderedForTheConsulUser(t *testing.T) {
	for _, tc := range goldenCases {
		files, err := Render(Input{Meta: sampleMeta(t, "api-1", "10.132.0.5"), User: mustParse(t, tc.line)})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			inConsulDir := strings.HasPrefix(f.Path, ConsulDir+"/")
			if inConsulDir != (f.Consumer == ConsumerConsul) {
				t.Errorf("%s/%s: consumer %s", tc.name, f.Path, f.Consumer)
			}
			if want := map[bool]string{true: ConsulUser, false: ""}[inConsulDir]; f.Consumer.Owner() != want {
				t.Errorf("%s/%s: owner %q, want %q", tc.name, f.Path, f.Consumer.Owner(), want)
			}
		}
	}
}

func TestApplyWritesEachFileOwnedByItsConsumersUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving files to another user needs root")
	}
	consul := fsutil.Owner{UID: 4242, GID: 4343}
	root := fsutil.Root{Dir: t.TempDir(), Owners: func(name string) (fsutil.Owner, error) {
		if name != ConsulUser {
			return fsutil.Owner{}, errors.New("unexpected user " + name)
		}
		return consul, nil
	}}
	files, err := Render(Input{Meta: sampleMeta(t, "api-1", "10.132.0.5"), User: mustParse(t, goldenCases[2].line)})
	if err != nil {
		t.Fatal(err)
	}
	// A file a later change adds to Consul's folder, e.g. a TLS key.
	files = append(files, File{Path: ConsulDir + "/tls-key.pem", Data: []byte("key"), Mode: 0o600, Consumer: ConsumerConsul})
	if _, err := Apply(context.Background(), root, files, TemplateValidator{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		st, err := os.Stat(root.Path(f.Path))
		if err != nil {
			t.Fatal(err)
		}
		sys := st.Sys().(*syscall.Stat_t)
		got := fsutil.Owner{UID: int(sys.Uid), GID: int(sys.Gid)}
		want := fsutil.Owner{UID: os.Geteuid(), GID: os.Getegid()}
		if f.Consumer == ConsumerConsul {
			want = consul
		}
		if got != want || st.Mode().Perm() != f.Mode.Perm() {
			t.Errorf("%s: owner %+v mode %04o, want %+v %04o", f.Path, got, st.Mode().Perm(), want, f.Mode.Perm())
		}
	}
	// A Consul that has no user (an image without it): nothing is written.
	fresh := fsutil.Root{Dir: t.TempDir(), Owners: func(name string) (fsutil.Owner, error) {
		return fsutil.Owner{}, errors.New("look up user " + name + ": unknown user " + name)
	}}
	_, err = Apply(context.Background(), fresh, files, TemplateValidator{})
	if err == nil || !strings.Contains(err.Error(), "owner of /etc/consul.d/acl.hcl: look up user consul") {
		t.Fatalf("err = %v", err)
	}
	if got := snapshot(t, fresh.Dir); len(got) != 0 {
		t.Fatalf("files written although an owner is unknown: %v", got)
	}
}
