package config

import "reflect"

// The Equal methods compare configurations for a reload: they ignore the
// Line fields (moving a block in the file, or adding a comment above it,
// changes nothing) and compare everything else. To compare a virtual server
// without its real servers, clear RealServers on the (copied) values first.

// Equal reports whether c and o configure the same thing.
func (c *Config) Equal(o *Config) bool {
	if c == nil || o == nil {
		return c == o
	}
	return equalIgnoringLines(reflect.ValueOf(*c), reflect.ValueOf(*o))
}

// Equal reports whether the two services are the same, real servers and
// health checks included.
func (v VirtualServer) Equal(o VirtualServer) bool { return equal(v, o) }

// Equal reports whether the two real servers are the same, health check
// included.
func (r RealServer) Equal(o RealServer) bool { return equal(r, o) }

// Equal reports whether the two health checks are the same.
func (h HealthCheck) Equal(o HealthCheck) bool { return equal(h, o) }

// Equal reports whether the two instances are the same.
func (v VRRPInstance) Equal(o VRRPInstance) bool { return equal(v, o) }

// Equal reports whether the two scripts are the same.
func (s VRRPScript) Equal(o VRRPScript) bool { return equal(s, o) }

// Equal reports whether the two sync groups are the same.
func (g SyncGroup) Equal(o SyncGroup) bool { return equal(g, o) }

func equal[T any](a, b T) bool {
	return equalIgnoringLines(reflect.ValueOf(a), reflect.ValueOf(b))
}

var pkgPath = reflect.TypeFor[Config]().PkgPath()

// equalIgnoringLines compares a and b (of the same type) like ==, element by
// element for slices, skipping the Line fields of this package's structs.
func equalIgnoringLines(a, b reflect.Value) bool {
	switch a.Kind() {
	case reflect.Struct:
		t := a.Type()
		if t.PkgPath() != pkgPath {
			return a.Interface() == b.Interface() // netip types, time.Duration...
		}
		for i := range t.NumField() {
			if t.Field(i).Name == "Line" {
				continue
			}
			if !equalIgnoringLines(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !equalIgnoringLines(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	default:
		return a.Interface() == b.Interface()
	}
}
