package config

import (
	"errors"
	"fmt"
	"strings"
)

// Command is a command line run by xlb (vrrp_script, notify, health-check
// and quorum commands), without a shell: Argv splits it into words as
// keepalived splits a script. Put anything that needs a shell in a script
// file, or run the shell: `/bin/sh -c 'a; b'`.
type Command string

// Argv returns the command's words (see Split): what the command runner
// executes, argv[0] looked up in PATH when it has no slash. It is nil for
// an empty command and for one that does not split, which Load reports: a
// loaded Config holds none.
func (c Command) Argv() []string {
	argv, _ := c.Split()
	return argv
}

// Split splits the command into words as keepalived's
// alloc_strvec_quoted_escaped (lib/parser.c) does: white space separates
// words; single and double quotes group (and may join a word:
// a'b c'd is "ab cd"), each closed only by its own kind; a backslash escapes
// the next character, inside quotes too: \a \b \E (escape) \f \n \r \t \v,
// \cX (control-X), \NNN (1 to 3 octal digits), \xH... (every hex digit that
// follows; the low 8 bits), and any other character stands for itself
// (\" \' \\ \ ). An empty command has no words (nil, nil); an unterminated
// quote, a final backslash, a NUL byte from an escape (which would cut the
// argument) and an empty program name are errors.
func (c Command) Split() ([]string, error) {
	s := string(c)
	var argv []string
	var word []byte
	for i := 0; i < len(s); {
		for i < len(s) && strings.IndexByte(whiteSpace, s[i]) >= 0 {
			i++
		}
		if i == len(s) {
			break
		}
		word = word[:0]
		var quote byte
		quoteAt := 0
	word:
		for ; i < len(s); i++ {
			switch ch := s[i]; {
			case ch == '\\':
				b, n, err := unescape(s[i+1:])
				if err != nil {
					return nil, err
				}
				word = append(word, b)
				i += n
			case quote != 0 && ch == quote:
				quote = 0
			case quote != 0:
				word = append(word, ch)
			case ch == '\'' || ch == '"':
				quote, quoteAt = ch, i
			case strings.IndexByte(whiteSpace, ch) >= 0:
				break word
			default:
				word = append(word, ch)
			}
		}
		if quote != 0 {
			return nil, fmt.Errorf("unterminated %c quote (opened at byte %d)", quote, quoteAt)
		}
		argv = append(argv, string(word))
	}
	if len(argv) > 0 && argv[0] == "" {
		return nil, errors.New("the program name is empty")
	}
	return argv, nil
}

// whiteSpace separates words (keepalived's WHITE_SPACE_STR).
const whiteSpace = " \t\n\v\f\r"

// unescape decodes the escape after a backslash, at the start of s: the
// byte it stands for and how many bytes of s it took.
func unescape(s string) (byte, int, error) {
	isOctal := func(i int) bool { return i < len(s) && s[i] >= '0' && s[i] <= '7' }
	isHex := func(i int) bool { return i < len(s) && strings.IndexByte("0123456789abcdefABCDEF", s[i]) >= 0 }
	var b byte
	n := 1
	switch {
	case s == "":
		return 0, 0, errors.New("a backslash ends the command (write \\\\ for a backslash)")
	case s[0] == 'x' && isHex(1):
		for ; isHex(n); n++ {
			b = b<<4 | hexValue(s[n])
		}
	case s[0] == 'c' && len(s) > 1:
		b, n = s[1]&0x1f, 2
	case isOctal(0):
		for n = 0; n < 3 && isOctal(n); n++ {
			b = b<<3 | (s[n] - '0')
		}
	default:
		b = s[0]
		if i := strings.IndexByte("abEfnrtv", b); i >= 0 {
			b = "\a\b\x1b\f\n\r\t\v"[i]
		}
	}
	if b == 0 {
		return 0, 0, fmt.Errorf("the escape \\%s is a NUL byte, which would cut the argument", s[:n])
	}
	return b, n, nil
}

func hexValue(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}
