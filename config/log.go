package config

import (
	"fmt"
	"log/slog"
	"strings"
)

// EnvLogLevel is the least severe log level written: debug, info (the default), warn or
// error. At info, serve writes a line per HTTP request and per mail; under heavy load
// that line is a sizeable share of a request's cost (docs/benchmarks.md), and warn keeps
// only what needs an operator.
const EnvLogLevel = "SELFRESET_LOG_LEVEL"

// LogLevel reads EnvLogLevel. Every command logs, so it is read on its own, before the
// command's other settings.
func LogLevel(getenv func(string) string) (slog.Level, error) {
	switch v := strings.TrimSpace(getenv(EnvLogLevel)); strings.ToLower(v) {
	case "", "info":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	default:
		return slog.LevelInfo, &Error{EnvLogLevel, fmt.Sprintf("is %q; it must be debug, info, warn or error", v)}
	}
}
