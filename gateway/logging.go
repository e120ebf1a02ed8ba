package gateway

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/sealgate/sealgate/config"
)

// NewLogger builds the operational logger from the log section of the
// config. The returned LevelVar lets a reload change the level while
// running.
func NewLogger(cfg config.Log, w io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	level := new(slog.LevelVar)
	if err := SetLogLevel(level, cfg.Level); err != nil {
		return nil, nil, err
	}
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	switch cfg.Format {
	case "json":
		h = slog.NewJSONHandler(w, opts)
	case "text", "":
		h = slog.NewTextHandler(w, opts)
	default:
		return nil, nil, fmt.Errorf("log.format: unknown format %q", cfg.Format)
	}
	return slog.New(h), level, nil
}

// SetLogLevel sets v from a config level name.
func SetLogLevel(v *slog.LevelVar, name string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(name)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	v.Set(l)
	return nil
}
