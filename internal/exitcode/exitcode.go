// Package exitcode is the one place where the exit codes of both CLIs,
// codelab-agent and imager, are defined and documented. Both --help texts
// and the README print Doc.
package exitcode

import (
	"errors"
	"fmt"
)

// The codes. codelab-agent status uses all of them; other commands use OK,
// Failed and Usage.
const (
	OK       = 0  // ready / success
	Failed   = 1  // a step or command failed
	Degraded = 2  // running, but some check is failing
	Booting  = 3  // boot still in progress
	Usage    = 64 // bad command line (EX_USAGE)
)

// OfState maps a droplet state, as `codelab-agent status` (and --fleet)
// names it, to its exit code: ready 0, degraded 2, booting 3, anything else
// (failed, unreachable, unknown) 1.
func OfState(state string) int {
	switch state {
	case "ready":
		return OK
	case "degraded":
		return Degraded
	case "booting":
		return Booting
	default:
		return Failed
	}
}

// Doc documents the codes for --help and the README.
const Doc = `Exit codes:
  0   ready / success
  1   failed (a boot step or the command failed; the message says which)
  2   degraded (running, but some check is failing)
  3   still booting
  64  usage error (bad flags or arguments)`

// Error carries an exit code with an error.
type Error struct {
	Code int
	Err  error
}

func (e *Error) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit %d", e.Code)
	}
	return e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// With wraps err with code.
func With(code int, err error) error { return &Error{Code: code, Err: err} }

// UsageError is an Error with code Usage.
func UsageError(format string, args ...any) error {
	return &Error{Code: Usage, Err: fmt.Errorf(format, args...)}
}

// AsUsage marks err, which the caller knows to be about the command line,
// as a usage error. nil stays nil.
func AsUsage(err error) error {
	if err == nil || Code(err) == Usage {
		return err
	}
	return With(Usage, err)
}

// Code maps an error to an exit code: nil is OK, an *Error its own code,
// anything else Failed.
func Code(err error) int {
	if err == nil {
		return OK
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Failed
}
