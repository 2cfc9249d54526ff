package config

import (
	"slices"
	"testing"
)

// Command.Split splits as keepalived's alloc_strvec_quoted_escaped; Argv
// returns the same words, or nil for an error.
var argvCases = []struct {
	cmd  string
	want []string // nil with err
	err  string
}{
	{cmd: "", want: nil},
	{cmd: "  /etc/xlb/notify.sh  master\tnow ", want: []string{"/etc/xlb/notify.sh", "master", "now"}},
	{cmd: "a\nb\rc\vd\fe", want: []string{"a", "b", "c", "d", "e"}},
	{cmd: `/bin/sh -c 'a; b'`, want: []string{"/bin/sh", "-c", "a; b"}},
	{cmd: `/bin/sh -c "echo \"hi there\""`, want: []string{"/bin/sh", "-c", `echo "hi there"`}},
	{cmd: `x "it's" 'say "hi"'`, want: []string{"x", "it's", `say "hi"`}},
	{cmd: `x a'b c'd "e"'f'`, want: []string{"x", "ab cd", "ef"}},
	{cmd: `x '' ""`, want: []string{"x", "", ""}},
	{cmd: `x a\ b \'q\' \"`, want: []string{"x", "a b", "'q'", `"`}},
	{cmd: `x \\ '\\' "\\"`, want: []string{"x", `\`, `\`, `\`}},
	// keepalived unescapes inside single quotes too (unlike a shell).
	{cmd: `x '\t' "\n"`, want: []string{"x", "\t", "\n"}},
	{cmd: `x \a\b\E\f\n\r\t\v`, want: []string{"x", "\a\b\x1b\f\n\r\t\v"}},
	{cmd: `x \101\60\1010 \777`, want: []string{"x", "A0A0", "\xff"}},
	{cmd: `x \x41 \x4a4b \xg`, want: []string{"x", "A", "K", "xg"}},
	{cmd: `x \cA\c[ \c`, want: []string{"x", "\x01\x1b", "c"}},
	{cmd: `x \q\%`, want: []string{"x", "q%"}},
	{cmd: `x 'a`, err: "unterminated ' quote (opened at byte 2)"},
	{cmd: `/bin/sh -c "echo 'a'`, err: `unterminated " quote (opened at byte 11)`},
	{cmd: `x 'a\'`, err: "unterminated ' quote (opened at byte 2)"},
	{cmd: `x a\`, err: `a backslash ends the command (write \\ for a backslash)`},
	{cmd: `x \0`, err: `the escape \0 is a NUL byte, which would cut the argument`},
	{cmd: `x \x00`, err: `the escape \x00 is a NUL byte, which would cut the argument`},
	{cmd: `'' x`, err: "the program name is empty"},
}

func TestCommandSplit(t *testing.T) {
	for _, tc := range argvCases {
		got, err := Command(tc.cmd).Split()
		if argv := Command(tc.cmd).Argv(); !slices.Equal(argv, got) || (argv == nil) != (got == nil) {
			t.Errorf("Argv(%q) = %q, Split %q", tc.cmd, argv, got)
		}
		switch {
		case tc.err != "" && (err == nil || err.Error() != tc.err):
			t.Errorf("Split(%q): err %v, want %q", tc.cmd, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("Split(%q): %v", tc.cmd, err)
		case !slices.Equal(got, tc.want) || (got == nil) != (tc.want == nil):
			t.Errorf("Split(%q) = %q, want %q", tc.cmd, got, tc.want)
		}
	}
}
