package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// wget is enough of wget for `wget -q -O /dev/null URL` and
// `wget -q --spider URL`, the healthcheck forms.
func wget(args []string) error {
	out, url := "", ""
	for i := 0; i < len(args); i++ {
		switch a := args[i]; a {
		case "-q", "--spider":
		case "-O":
			if i+1 >= len(args) {
				return fmt.Errorf("wget: -O needs a file")
			}
			i++
			out = args[i]
		default:
			if url != "" || len(a) > 0 && a[0] == '-' {
				return fmt.Errorf("wget: unsupported argument %q", a)
			}
			url = a
		}
	}
	if url == "" {
		return fmt.Errorf("wget: no URL")
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return fmt.Errorf("wget: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("wget: %s: %s", url, resp.Status)
	}
	w := io.Discard
	if out != "" && out != "/dev/null" && out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	} else if out == "-" {
		w = os.Stdout
	}
	_, err = io.Copy(w, resp.Body)
	return err
}
