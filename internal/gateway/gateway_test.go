package gateway

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// TestConfigRefusesNegativeValues: a negative duration or count is an
// error naming the setting, never silently the default.
func TestConfigRefusesNegativeValues(t *testing.T) {
	for name, cfg := range map[string]Config{
		"health-interval": {Nodes: []string{"127.0.0.1:1"}, HealthInterval: -time.Second},
		"proxy-timeout":   {Nodes: []string{"127.0.0.1:1"}, ProxyTimeout: -1},
		"max-tries":       {Nodes: []string{"127.0.0.1:1"}, MaxTries: -1},
	} {
		g, err := New(cfg)
		if err == nil {
			g.Close()
		}
		if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), name) {
			t.Errorf("%s negative: %v, want ErrConfig naming it", name, err)
		}
	}
}
