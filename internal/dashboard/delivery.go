package dashboard

import (
	"net/http"
	"time"

	"github.com/tapline/tapline/internal/store"
)

type deliveryData struct {
	Sinks     []sinkView
	Dead      []store.DeadLetter
	DeadTotal int
}

type sinkView struct {
	store.SinkState
	LagFor string
}

// maxDeadShown bounds the dead letters listed; `tapline query sinks
// --dead-letters` lists them all.
const maxDeadShown = 100

// delivery shows each sink's cursor, lag, last error, retries and dead
// letters, as
// `tapline query sinks` does: the configured sinks and every sink the
// store knows.
func (d *Dashboard) delivery(w http.ResponseWriter, r *http.Request) {
	names := append([]string(nil), d.cfg.Sinks...)
	known, err := d.st.KnownSinks(r.Context())
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for _, n := range known {
		if !contains(names, n) {
			names = append(names, n)
		}
	}
	states, err := d.st.SinkStates(r.Context(), names)
	if err != nil {
		d.fail(w, r, err)
		return
	}
	var data deliveryData
	now := d.cfg.Now()
	for _, s := range states {
		v := sinkView{SinkState: s}
		if s.Lag > 0 && !s.Oldest.IsZero() {
			v.LagFor = max(now.Sub(s.Oldest), 0).Round(time.Second).String()
		}
		data.Sinks = append(data.Sinks, v)
		data.DeadTotal += int(s.DeadLetters)
	}
	// The newest dead letters matter most; DeadLetters walks oldest first.
	err = d.st.DeadLetters(r.Context(), "", func(dl store.DeadLetter) error {
		data.Dead = append(data.Dead, dl)
		if len(data.Dead) > maxDeadShown {
			data.Dead = data.Dead[1:]
		}
		return nil
	})
	if err != nil {
		d.fail(w, r, err)
		return
	}
	for i, j := 0, len(data.Dead)-1; i < j; i, j = i+1, j-1 {
		data.Dead[i], data.Dead[j] = data.Dead[j], data.Dead[i]
	}
	d.render(w, r, http.StatusOK, "delivery", "Delivery", data)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
