package nettest

import "testing"

func TestProcIPVSAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0A4D0064:0050":        "10.77.0.100:80",
		"[fd77::100]:01BB":     "[fd77::100]:443",
		"C0000264:1F90":        "192.0.2.100:8080",
		"0A4D00:0050":          "",
		"[fd77::100:0050":      "",
		"0A4D0064:GG":          "",
		"":                     "",
		"[::ffff:10.0.0.1]:50": "[::ffff:10.0.0.1]:80",
	} {
		got, err := ProcIPVSAddr(in)
		if want == "" {
			if err == nil {
				t.Errorf("%q: %v, want an error", in, got)
			}
			continue
		}
		if err != nil || got.String() != want {
			t.Errorf("%q: %v, %v; want %s", in, got, err, want)
		}
	}
}
