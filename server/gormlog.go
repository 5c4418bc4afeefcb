package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/logger"
)

// gormLog is gorm's logger writing through the process's slog logger, one
// valid line per event. gorm's own slog logger passes its printf
// arguments as a "data" attribute: a connect error is a struct the JSON
// handler cannot encode, and the line read "!ERROR:json: unsupported
// type". Here the message is formatted first, and a query's error is its
// text.
type gormLog struct {
	log   *slog.Logger
	level logger.LogLevel
	slow  time.Duration // a slower query is a warning; 0: none
}

var (
	_ logger.Interface  = gormLog{}
	_ gorm.ParamsFilter = gormLog{}
)

func newGormLog(log *slog.Logger, level logger.LogLevel, slow time.Duration) gormLog {
	return gormLog{log: log, level: level, slow: slow}
}

func (g gormLog) LogMode(l logger.LogLevel) logger.Interface { g.level = l; return g }

func (g gormLog) Info(ctx context.Context, msg string, data ...any) {
	g.printf(ctx, logger.Info, slog.LevelInfo, msg, data)
}

func (g gormLog) Warn(ctx context.Context, msg string, data ...any) {
	g.printf(ctx, logger.Warn, slog.LevelWarn, msg, data)
}

func (g gormLog) Error(ctx context.Context, msg string, data ...any) {
	g.printf(ctx, logger.Error, slog.LevelError, msg, data)
}

func (g gormLog) printf(ctx context.Context, at logger.LogLevel, level slog.Level, msg string, data []any) {
	if g.level < at {
		return
	}
	if len(data) > 0 {
		msg = fmt.Sprintf(msg, data...)
	}
	g.log.Log(ctx, level, "gorm: "+msg)
}

// Trace logs a failed query as an error and a slow one as a warning (at
// gorm's Info level, every query, as debug).
func (g gormLog) Trace(ctx context.Context, begin time.Time, fc func() (string, int64), err error) {
	if g.level <= logger.Silent {
		return
	}
	elapsed := time.Since(begin)
	var (
		level slog.Level
		msg   string
	)
	switch {
	case err != nil && g.level >= logger.Error && !errors.Is(err, logger.ErrRecordNotFound):
		level, msg = slog.LevelError, "gorm: query failed"
	case g.slow > 0 && elapsed > g.slow && g.level >= logger.Warn:
		level, msg = slog.LevelWarn, "gorm: slow query"
	case g.level >= logger.Info:
		level, msg = slog.LevelDebug, "gorm: query"
	default:
		return
	}
	if !g.log.Enabled(ctx, level) {
		return
	}
	sql, rows := fc()
	attrs := []slog.Attr{slog.String("sql", sql), slog.Duration("duration", elapsed)}
	if rows >= 0 {
		attrs = append(attrs, slog.Int64("rows", rows))
	}
	if err != nil {
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	g.log.LogAttrs(ctx, level, msg, attrs...)
}

// ParamsFilter keeps a query's values out of its log line: they are
// payloads and headers, which may carry secrets.
func (gormLog) ParamsFilter(_ context.Context, sql string, _ ...any) (string, []any) {
	return sql, nil
}

// ParamsFilter is the wrapped logger's, which gorm would not see through
// the wrapper.
func (q outageQuiet) ParamsFilter(ctx context.Context, sql string, params ...any) (string, []any) {
	if f, ok := q.Interface.(gorm.ParamsFilter); ok {
		return f.ParamsFilter(ctx, sql, params...)
	}
	return sql, params
}
