package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Store is the narrow view of the S3 API that backups need.
type Store interface {
	// Put uploads the local file at path as key. progress, when not nil,
	// is called with each chunk's size as it is sent, maybe from several
	// goroutines at once.
	Put(ctx context.Context, key, path string, progress func(n int64)) error
	// Get opens key for reading.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// List returns every key below prefix.
	List(ctx context.Context, prefix string) ([]Object, error)
	// Copy copies object src to dst within the bucket.
	Copy(ctx context.Context, src, dst string) error
	// Delete removes key.
	Delete(ctx context.Context, key string) error
	// Check fails when the bucket cannot be reached with these keys.
	Check(ctx context.Context) error
}

// Object is a listed key.
type Object struct {
	Key          string
	Size         int64
	LastModified time.Time
}

// S3 is Store over an S3 API (DigitalOcean Spaces in production, a
// local versitygw in the tests).
type S3 struct {
	client *minio.Client
	bucket string
}

// NewS3 connects to the Spaces endpoint. transport may be nil.
func NewS3(s Spaces, transport http.RoundTripper) (*S3, error) {
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("spaces endpoint: %w", err)
	}
	if transport == nil {
		t, err := minio.DefaultTransport(u.Scheme == "https")
		if err != nil {
			return nil, err
		}
		transport = t
	}
	c, err := minio.New(u.Host, &minio.Options{
		Creds:      credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		Secure:     u.Scheme == "https",
		Region:     s.Region,
		Transport:  transport,
		MaxRetries: 3,
	})
	if err != nil {
		return nil, fmt.Errorf("spaces client: %w", err)
	}
	return &S3{client: c, bucket: s.Bucket}, nil
}

func (s *S3) Put(ctx context.Context, key, path string, progress func(n int64)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	if progress != nil {
		opts.Progress = progressReader(progress)
	}
	if _, err := s.client.PutObject(ctx, s.bucket, key, f, st.Size(), opts); err != nil {
		return fmt.Errorf("upload %s: %w", key, err)
	}
	return nil
}

// progressReader is minio's Progress hook: it "reads" as many bytes as
// were just sent.
type progressReader func(n int64)

func (p progressReader) Read(b []byte) (int, error) {
	p(int64(len(b)))
	return len(b), nil
}

func (s *S3) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	o, err := s.client.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", key, err)
	}
	// GetObject is lazy: Stat makes a missing key an error here.
	if _, err := o.Stat(); err != nil {
		o.Close()
		return nil, fmt.Errorf("download %s: %w", key, err)
	}
	return o, nil
}

func (s *S3) List(ctx context.Context, prefix string) ([]Object, error) {
	var out []Object
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s: %w", prefix, o.Err)
		}
		out = append(out, Object{Key: o.Key, Size: o.Size, LastModified: o.LastModified})
	}
	return out, nil
}

// Copy is a server-side copy (multipart above 5 GiB).
func (s *S3) Copy(ctx context.Context, src, dst string) error {
	if _, err := s.client.ComposeObject(ctx, minio.CopyDestOptions{Bucket: s.bucket, Object: dst},
		minio.CopySrcOptions{Bucket: s.bucket, Object: src}); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

func (s *S3) Delete(ctx context.Context, key string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return nil
}

func (s *S3) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("reach bucket: %w", err)
	}
	if !ok {
		return errors.New("bucket does not exist")
	}
	return nil
}
