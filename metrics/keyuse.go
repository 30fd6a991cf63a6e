package metrics

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// handles is a copy-on-write map of metric handles: lookups take no lock
// and allocate nothing; adding one copies the map under a mutex (once per
// label combination, so rarely).
type handles[K comparable, V any] struct {
	mu sync.Mutex
	m  atomic.Pointer[map[K]*V]
}

// get returns the handle of k, made by create on first use.
func (h *handles[K, V]) get(k K, create func(K) *V) *V {
	if p := h.m.Load(); p != nil {
		if v := (*p)[k]; v != nil {
			return v
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	var next map[K]*V
	if p := h.m.Load(); p != nil {
		if v := (*p)[k]; v != nil {
			return v
		}
		next = maps.Clone(*p)
	} else {
		next = map[K]*V{}
	}
	v := create(k)
	next[k] = v
	h.m.Store(&next)
	return v
}

// keyOp is a data key name and an operation on it.
type keyOp struct{ key, op string }

// keyUse holds the counters of one keyOp.
type keyUse struct {
	ops, errors, bytes prometheus.Counter
}

// The operations of a data key that have their counters at hand; others
// are found in Metrics.otherKeyUses.
var keyOpNames = [...]string{"encrypt", "decrypt", "lookup"}

// keyUses holds the counters of one data key's usual operations, in the
// order of keyOpNames.
type keyUses [len(keyOpNames)]keyUse

// ObserveKeyUse counts one use of data key key: op is "encrypt",
// "decrypt" or "lookup", bytes the size of the value, err its failure (nil
// when it succeeded). After the first use of a key it takes no lock and
// allocates nothing.
func (m *Metrics) ObserveKeyUse(op string, key string, bytes int, err error) {
	if m == nil {
		return
	}
	var u *keyUse
	switch op {
	case "encrypt":
		u = &m.keyUses.get(key, m.newKeyUses)[0]
	case "decrypt":
		u = &m.keyUses.get(key, m.newKeyUses)[1]
	case "lookup":
		u = &m.keyUses.get(key, m.newKeyUses)[2]
	default:
		u = m.otherKeyUses.get(keyOp{key, op}, m.newKeyUse)
	}
	u.ops.Inc()
	u.bytes.Add(float64(bytes))
	if err != nil {
		u.errors.Inc()
	}
}

func (m *Metrics) newKeyUses(key string) *keyUses {
	var us keyUses
	for i, op := range keyOpNames {
		us[i] = *m.newKeyUse(keyOp{key, op})
	}
	return &us
}

func (m *Metrics) newKeyUse(k keyOp) *keyUse {
	return &keyUse{
		ops:    m.keyOps.WithLabelValues(k.key, k.op),
		errors: m.keyErrors.WithLabelValues(k.key, k.op),
		bytes:  m.keyBytes.WithLabelValues(k.key, k.op),
	}
}

// masterOp is a master key provider and an operation on it.
type masterOp struct{ provider, op string }

// masterCall holds the metrics of one masterOp.
type masterCall struct {
	duration prometheus.Observer
	errors   prometheus.Counter
}

// ObserveMasterKeyCall records one call to a master key provider
// (provider "local" or "aws-kms"; op "wrap", "unwrap" or
// "generate_data_key") that took d and failed with err (nil: succeeded).
func (m *Metrics) ObserveMasterKeyCall(provider, op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	c := m.masterCalls.get(masterOp{provider, op}, m.newMasterCall)
	c.duration.Observe(d.Seconds())
	if err != nil {
		c.errors.Inc()
	}
}

func (m *Metrics) newMasterCall(k masterOp) *masterCall {
	return &masterCall{
		duration: m.masterKeyDuration.WithLabelValues(k.provider, k.op),
		errors:   m.masterKeyErrors.WithLabelValues(k.provider, k.op),
	}
}
