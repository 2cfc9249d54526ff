package control

import (
	"encoding/json"
	"strconv"
)

// The services of `xlb status --json`, written by hand as
// json.MarshalIndent(&service, "    ", "  ") writes them: encoding/json
// took 350 ms and 49 MB of garbage for the 25 MB of 64,000 real servers,
// the most of a status call. TestServiceJSONAsEncodingJSON compares the
// two on services with every field set; a field added to ServiceInfo or
// RealInfo must be added here.

// jsonOut appends indented JSON to a buffer.
type jsonOut struct {
	b      []byte
	indent []byte // "\n" and the current indentation
	first  bool   // no member written yet in the current object or array
}

func (o *jsonOut) open(c byte) {
	o.b = append(o.b, c)
	o.indent = append(o.indent, ' ', ' ')
	o.first = true
}

func (o *jsonOut) close(c byte) {
	o.indent = o.indent[:len(o.indent)-2]
	if !o.first {
		o.b = append(o.b, o.indent...)
	}
	o.b = append(o.b, c)
	o.first = false
}

// key starts a member: the comma, the new line, "name": .
func (o *jsonOut) key(name string) {
	if !o.first {
		o.b = append(o.b, ',')
	}
	o.first = false
	o.b = append(o.b, o.indent...)
	o.b = append(o.b, '"')
	o.b = append(o.b, name...)
	o.b = append(o.b, `": `...)
}

func (o *jsonOut) str(name, v string) {
	o.key(name)
	o.b = appendJSONString(o.b, v)
}

func (o *jsonOut) uint(name string, v uint64) {
	o.key(name)
	o.b = strconv.AppendUint(o.b, v, 10)
}

func (o *jsonOut) int(name string, v int64) {
	o.key(name)
	o.b = strconv.AppendInt(o.b, v, 10)
}

func (o *jsonOut) bool(name string, v bool) {
	o.key(name)
	o.b = strconv.AppendBool(o.b, v)
}

// value writes v as encoding/json does, indented: what is rare (rates).
func (o *jsonOut) value(name string, v any) {
	o.key(name)
	b, err := json.MarshalIndent(v, string(o.indent[1:]), "  ")
	if err != nil {
		b = []byte("null") // not for the plain structs given
	}
	o.b = append(o.b, b...)
}

func (o *jsonOut) counters(c Counters) {
	o.key("counters")
	o.open('{')
	o.uint("connections", c.Connections)
	o.uint("packets_in", c.PacketsIn)
	o.uint("packets_out", c.PacketsOut)
	o.uint("bytes_in", c.BytesIn)
	o.uint("bytes_out", c.BytesOut)
	o.close('}')
}

// appendServiceJSON appends s as json.MarshalIndent(s, prefix, "  ").
func appendServiceJSON(b []byte, s *ServiceInfo, prefix string) []byte {
	o := jsonOut{b: b}
	o.service(s, prefix)
	return o.b
}

// service appends s as json.MarshalIndent(s, prefix, "  ").
func (o *jsonOut) service(s *ServiceInfo, prefix string) {
	o.indent = append(append(o.indent[:0], '\n'), prefix...)
	o.open('{')
	o.str("name", s.Name)
	o.str("protocol", s.Protocol)
	o.str("address", s.Address)
	o.str("scheduler", s.Scheduler)
	o.str("forward", s.Forward)
	if s.Persistence != 0 {
		o.int("persistence_seconds", s.Persistence)
	}
	if s.Instance != "" {
		o.str("vrrp_instance", s.Instance)
	}
	o.bool("up", s.Up)
	o.bool("forwarding", s.Forwarding)
	if s.SorryActive {
		o.bool("sorry_active", true)
	}
	o.counters(s.Counters)
	if s.Rates != nil {
		o.value("rates", s.Rates)
	}
	o.key("real_servers")
	if s.Reals == nil {
		o.b = append(o.b, "null"...)
	} else {
		o.open('[')
		for i := range s.Reals {
			r := &s.Reals[i]
			if !o.first {
				o.b = append(o.b, ',')
			}
			o.first = false
			o.b = append(o.b, o.indent...)
			o.open('{')
			o.str("address", r.Address)
			o.uint("weight", uint64(r.Weight))
			if r.Override != nil {
				o.uint("weight_override", uint64(*r.Override))
			}
			o.uint("effective_weight", uint64(r.Effective))
			o.str("health", r.Health)
			if r.Unresolved {
				o.bool("unresolved", true)
			}
			if r.HealthError != "" {
				o.str("health_error", r.HealthError)
			}
			if r.Sorry {
				o.bool("sorry", true)
			}
			o.uint("active_conns", r.ActiveConns)
			o.uint("inactive_conns", r.InactiveConns)
			o.counters(r.Counters)
			if r.Rates != nil {
				o.value("rates", r.Rates)
			}
			o.close('}')
		}
		o.close(']')
	}
	o.close('}')
}

// appendJSONString appends s quoted as encoding/json quotes it (HTML
// characters escaped); plain ASCII is copied, anything else is left to
// encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s)
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
