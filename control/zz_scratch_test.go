package control

import (
	"io"
	"testing"
)

func BenchmarkZZStatusBuild(b *testing.B) {
	r := scaleDaemon(b)
	b.ReportAllocs()
	for b.Loop() {
		r.d.Status(false)
	}
}

func BenchmarkZZStatusJSON(b *testing.B) {
	r := scaleDaemon(b)
	st := r.d.Status(false)
	b.ReportAllocs()
	for b.Loop() {
		writeStatusJSON(io.Discard, st)
	}
}

func BenchmarkZZStatusText(b *testing.B) {
	r := scaleDaemon(b)
	st := r.d.Status(false)
	b.ReportAllocs()
	for b.Loop() {
		FormatStatus(io.Discard, st, FormatConns)
	}
}
