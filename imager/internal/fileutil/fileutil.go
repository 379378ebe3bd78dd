// Package fileutil is the imager's one way to copy a file: the payload, the staged
// templates and the extracted artifacts all go through CopyFile or WriteFrom.
package fileutil

import (
	"fmt"
	"io"
	"os"
)

// CopyFile copies src to dst (created or truncated) and sets mode.
func CopyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	if err := WriteFrom(in, dst, mode); err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// WriteFrom writes r to dst (created or truncated) and sets mode.
func WriteFrom(r io.Reader, dst string, mode os.FileMode) error {
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return fmt.Errorf("write %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("write %s: %w", dst, err)
	}
	return os.Chmod(dst, mode)
}
