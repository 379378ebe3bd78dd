package cliconv

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// LogLevels are the names --log-level accepts.
const LogLevels = "debug, info, warn, error"

// TextLevel is what LogLevel sets: a *slog.Level or a *slog.LevelVar.
type TextLevel interface {
	UnmarshalText([]byte) error
	String() string
}

type levelValue struct{ l TextLevel }

// LogLevel is a --log-level flag value that sets l and rejects anything
// that is not one of LogLevels (any case), so a typo is a usage error
// instead of a silent "info". l is a *slog.Level or a *slog.LevelVar.
func LogLevel(l TextLevel) pflag.Value {
	return levelValue{l}
}

func (v levelValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return v.l.UnmarshalText([]byte(s))
	}
	return fmt.Errorf("want one of %s", LogLevels)
}

func (v levelValue) String() string { return strings.ToLower(v.l.String()) }
func (v levelValue) Type() string   { return "level" }

var (
	_ TextLevel = (*slog.Level)(nil)
	_ TextLevel = (*slog.LevelVar)(nil)
)
