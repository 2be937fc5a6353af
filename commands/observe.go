package commands

import "time"

// Observer is told how each command ended and how long it took (metrics.Metrics in
// `serve`). It must be cheap and safe for concurrent use.
type Observer interface {
	ObserveCommand(name string, took time.Duration, err error)
}

// observe reports a command to the observer, if any: `defer h.observe("name", time.Now(), &err)`
// at the top of each exported command, so every return path is counted once.
func (h *Handler) observe(name string, start time.Time, err *error) {
	if h.obs != nil {
		h.obs.ObserveCommand(name, time.Since(start), *err)
	}
}
