package sync

import (
	"slices"
	"testing"
)

// FuzzDecode: no datagram makes the decoders panic; a message DecodeIPVS
// accepts encodes back to records that decode the same (options dropped,
// so possibly fewer bytes); each record either converts to a connection
// or says why not; an xlb envelope opens only with a valid MAC and then
// reseals to the same bytes.
func FuzzDecode(f *testing.F) {
	f.Add(EncodeIPVS(51, []Record{recV4, recV6}, 1472)[0], uint8(51))
	f.Add(withOption(EncodeIPVS(0, []Record{recV4}, 1472)[0], 9, 2, 1, 2), uint8(0))
	f.Add(SealXLB(testKey, Envelope{Type: MsgBulkConns, Epoch: 1, Seq: 2, RequestID: 3, Body: EncodeIPVS(1, []Record{recV4}, 1400)[0]}), uint8(1))
	f.Add(SealXLB(testKey, Envelope{Type: MsgBulkEnd, Epoch: 1, Seq: 3, RequestID: 3, Count: 1}), uint8(1))
	f.Fuzz(func(t *testing.T, b []byte, syncID uint8) {
		recs, skipped, why := DecodeIPVS(b, syncID)
		if why != ReasonNone && (len(recs) != 0 || len(skipped) != 0) {
			t.Fatalf("refused (%v) with records %v, skipped %v", why, recs, skipped)
		}
		if why == ReasonNone {
			if len(recs)+len(skipped) != int(b[4]) {
				t.Fatalf("%d records and %d skipped of %d", len(recs), len(skipped), b[4])
			}
			for _, m := range EncodeIPVS(syncID, recs, 1<<16-1) {
				again, sk, why := DecodeIPVS(m, syncID)
				if why != ReasonNone || len(sk) != 0 || !slices.Equal(again, recs) {
					t.Fatalf("re-encoded %v: %v, %v, %v", recs, again, sk, why)
				}
			}
			for _, r := range recs {
				if c, why := ConnOf(r); why == ReasonNone && !c.Template && RecordOf(c).State != r.State {
					// xlb keeps fewer states than IPVS: the conversion
					// back is to xlb's own name for the state.
					if back, _ := ConnOf(RecordOf(c)); back.State != c.State {
						t.Fatalf("state %d -> %v -> %v", r.State, c.State, back.State)
					}
				}
			}
		}
		e, why := OpenXLB(testKey, b)
		if why == ReasonNone {
			if again := SealXLB(testKey, e); !slices.Equal(again, b) {
				t.Fatalf("opened %+v, resealed differently", e)
			}
		}
	})
}
