// Package exitcode is the agent's old import path for the exit-code table,
// which now lives in github.com/codelab-app/infra/internal/exitcode (shared
// with the imager). Every name forwards there; nothing is defined here.
// New code imports the shared package.
package exitcode

import shared "github.com/codelab-app/infra/internal/exitcode"

// The codes, from the shared table.
const (
	OK       = shared.OK
	Failed   = shared.Failed
	Degraded = shared.Degraded
	Booting  = shared.Booting
	Usage    = shared.Usage
	Doc      = shared.Doc
)

// Error is the shared exitcode.Error.
type Error = shared.Error

// The shared constructors and Code.
var (
	With       = shared.With
	UsageError = shared.UsageError
	AsUsage    = shared.AsUsage
	Code       = shared.Code
)
