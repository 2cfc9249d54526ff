package xdp

import (
	"testing"

	"github.com/xlb-dev/xlb/dataplane"
	"github.com/xlb-dev/xlb/test/packet"
)

// BenchmarkSyncReporting: the fast path with connection sync's reports on
// against off, in the same run (the ratio is on/off; bench_test.go's
// method). Established packets report nothing (a flow is reported when
// its state changes); a packet of a flow without state that is not a SYN
// (after a failover, or a handshake's ACK) creates an established entry
// and is reported: the worst case, every packet a report. The control
// plane reads the ring meanwhile, on the other CPU; what it could not
// keep up with is lost, counted and printed. Measured on a shared 2-CPU
// machine: established 0.95-0.99; a report at every new flow 1.09-1.38
// (4 runs) since the program wakes the reader only when 512 KiB wait and
// the reader polls every 10ms, 1.50-1.58 (3 runs) with a wakeup per
// record (2.0-2.3 on a busier machine), 1.16 without a reader (the ring
// full, reserves failing): what is left is the ring's memory and its
// positions shared with the reading CPU, at a million reports a second.
func BenchmarkSyncReporting(b *testing.B) {
	for _, tc := range []struct {
		name string
		mode uint32
		syn  bool // the frame is a SYN (else the handshake's ACK)
	}{
		{"established", benchSameFlow, false},
		{"new flow", benchNewFlows, true},
		{"handshake", benchHandshake, true},
		{"reported new flows", benchNewFlows, false},
	} {
		b.Run(tc.name, func(b *testing.B) {
			e := benchEnv(b)
			e.apply(svc(dataplane.RoundRobin, e.pool(16)))
			syn := tcpFrame(client(1), vip4, 40000, 80, packet.SYN)
			syn.Payload = nil
			e.pick(syn)
			ack := syn
			ack.TCPFlags = packet.ACK
			e.pick(ack)
			frame := ack.Bytes()
			if tc.syn {
				frame = syn.Bytes()
			}
			w := loadBenchObjs(b, tc.mode)
			reports := e.d.Reports()
			var got int
			done := make(chan struct{})
			go func() {
				defer close(done)
				for batch := range reports {
					got += len(batch)
				}
			}()
			run := func(on bool) func() float64 {
				return func() float64 {
					if err := e.d.SetReporting(on); err != nil {
						b.Fatal(err)
					}
					return e.nsPerPacket(b, w, e.d.Program(), frame)
				}
			}
			for b.Loop() {
				measure(b, 7, run(false), run(true))
			}
			st := e.d.SyncStats()
			e.d.Close()
			<-done
			b.Logf("%s: reporting off (as floor) against on (as xlb); %d reported, %d read by the control plane, %d lost (ring full)",
				tc.name, st.Reported, got, st.Lost)
			switch {
			case (tc.mode == benchSameFlow || tc.mode == benchNewFlows && tc.syn) && st.Reported+st.Lost != 0:
				b.Errorf("%s: %d reports, want none", tc.name, st.Reported+st.Lost)
			case (tc.mode == benchHandshake || tc.mode == benchNewFlows && !tc.syn) && st.Reported+st.Lost == 0:
				b.Errorf("%s: no report", tc.name)
			}
		})
	}
}
