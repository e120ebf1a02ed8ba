package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/sealgate/sealgate/config"
	"github.com/sealgate/sealgate/gateway"
)

// drainTimeout bounds how long a stop waits for SMTP transactions in
// flight; a second signal ends the process at once.
const drainTimeout = 30 * time.Second

func newServeCmd() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway",
		Long: `Run the gateway: the SMTP listeners, the spool, delivery and the admin
HTTP listener. Without --config it runs on the embedded defaults.

Signals: SIGTERM or SIGINT stop accepting mail, let transactions in flight
finish (up to 30s) and close the spool cleanly; a second signal exits at
once. SIGHUP re-reads the config file (log level, policy rules, DKIM
keys, TLS policy, inbound limits, timeouts, trusted networks, tenants and
users) and the listener certificate.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			if err := gateway.CheckConfig(cfg); err != nil {
				return usageErr(err)
			}
			return serve(cfg, configPath)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "config file (default: embedded defaults)")
	return cmd
}

func serve(cfg *config.Config, configPath string) error {
	logger, level, err := gateway.NewLogger(cfg.Log, os.Stderr)
	if err != nil {
		return usageErr(err)
	}
	// Catch signals before anything listens: a SIGHUP (log rotation, say)
	// arriving just after start must reload, not kill the process.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)

	setMemoryLimit(cfg, logger)
	for _, w := range gateway.ConfigWarnings(cfg, time.Now()) {
		logger.Warn("config warning", "warning", w)
	}
	gw, err := gateway.New(cfg, logger)
	if err != nil {
		return err
	}
	if err := gw.Start(); err != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		defer cancel()
		_ = gw.Shutdown(shutdownCtx)
		return err
	}

	for sig := range sigs {
		if sig != syscall.SIGHUP {
			logger.Info("signal received, draining", "signal", sig.String(), "deadline", drainTimeout)
			break
		}
		if configPath != "" {
			newCfg, err := config.Load(configPath)
			if err != nil {
				logger.Error("config reload refused; the running config stays", "err", err)
				continue
			}
			if err := gateway.SetLogLevel(level, newCfg.Log.Level); err != nil {
				logger.Error("config reload", "err", err)
			}
			policyErr := gw.ReloadPolicy(newCfg)
			keysErr := gw.ReloadKeys(newCfg)
			gw.ReloadInbound(newCfg)
			if policyErr == nil && keysErr == nil {
				logger.Info("config reloaded (log level, policy, DKIM keys, TLS policy, inbound limits, networks, tenants and users; other changes need a restart)", "file", configPath)
				gw.RecordAdmin("reload", "SIGHUP to the process", "config reloaded from "+configPath)
			}
		}
		if err := gw.Reload(); err != nil {
			logger.Error("reload", "err", err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	go func() {
		select {
		case sig := <-sigs:
			logger.Warn("second signal, exiting without draining", "signal", sig.String())
			os.Exit(1)
		case <-ctx.Done():
		}
	}()
	if err := gw.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// setMemoryLimit gives the Go runtime a soft memory limit of what the
// byte budgets allow (message bodies in, bodies out) plus room for
// everything else, so that garbage from large messages is collected
// before the heap doubles. GOMEMLIMIT in the environment wins.
func setMemoryLimit(cfg *config.Config, logger *slog.Logger) {
	in, out := cfg.Inbound.MaxBytesInFlight, cfg.Outbound.MaxBytesInFlight
	if os.Getenv("GOMEMLIMIT") != "" || in <= 0 || out <= 0 {
		return
	}
	limit := in + out + 128<<20
	debug.SetMemoryLimit(limit)
	logger.Debug("soft memory limit set", "bytes", limit)
}
