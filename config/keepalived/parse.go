package keepalived

import (
	"math"
	"strconv"
	"strings"
	"time"
)

// The second phase, as keepalived's process_stream (lib/parser.c): each
// line's first word is looked up among the keywords of the current block;
// a keyword with a block of keywords reads it recursively (its '{' on the
// next line, as the preprocessor splits braces), a keyword with a block of
// values (virtual_ipaddress { ... }) gets the block's lines, and an
// unknown keyword is a warning at its line. As in keepalived, the '}' of an
// unknown keyword's block closes the enclosing block.

// stmt is a keyword's line, and for a block of values its lines.
type stmt struct {
	Line
	vals []Line
}

func (s *stmt) kw() string { return s.Words[0] }

type parser struct {
	lines []Line
	i     int
	skip  int // skip_sublevel
	d     *diags
	c     *kaConfig
	// the objects being filled
	script *kaScript
	group  *kaGroup
	inst   *kaInstance
	vsg    *kaVSGroup
	vs     *kaVS
	rs     *kaRS
	chk    *kaChecker
	host   *kaChecker // the SMTP_CHECK whose host block is being read
	tf     *kaTrackFile
	url    *kaURL
	seen   map[*keyword]bool
}

func (p *parser) stream(kws []*keyword, needBOB bool, level int) bool {
	for p.i < len(p.lines) {
		ln := p.lines[p.i]
		p.i++
		str := ln.Words[0]
		if p.skip == -1 {
			if str == "{" {
				p.skip, needBOB = 1, false
				continue
			}
			p.skip = 0
		}
		if p.skip > 0 {
			for _, w := range ln.Words {
				if w == "{" {
					p.skip++
				} else if w == "}" {
					if p.skip--; p.skip == 0 {
						break
					}
				}
			}
			if str == "}" && p.skip == 0 && level > 0 {
				return true
			}
			continue
		}
		if needBOB {
			needBOB = false
			if str == "{" && level > 0 {
				continue
			}
			p.d.errorf(ln.Pos, str, "missing '{' at the beginning of the block")
		} else if str == "{" {
			p.d.warnf(ln.Pos, "{", "unexpected '{': ignored (as keepalived)")
			continue
		}
		if str == "}" && level > 0 {
			return false
		}
		kw := find(kws, str)
		if kw == nil {
			p.d.warnf(ln.Pos, str, "unknown keyword: ignored (as keepalived)")
			continue
		}
		p.seen[kw] = true
		s := &stmt{Line: ln}
		switch {
		case kw.sub != nil:
			p.call(kw, s)
			skipped := p.stream(kw.sub, true, level+1)
			if !skipped && kw.end != nil {
				kw.end(p, s)
			}
		case kw.skip:
			p.call(kw, s)
			p.skip = -1
			p.stream(nil, false, level+1)
		case kw.vals:
			s.vals = p.valueBlock(ln, kw.named)
			p.call(kw, s)
		default:
			p.call(kw, s)
		}
	}
	return false
}

// call runs a keyword's handler, or reports it as its status says.
func (p *parser) call(kw *keyword, s *stmt) {
	if kw.fn != nil {
		kw.fn(p, s)
		return
	}
	switch kw.st {
	case ignored:
		p.d.warnf(s.Pos, kw.name, "not supported by xlb: ignored (%s)", kw.note)
	case unsupported:
		p.d.errorf(s.Pos, kw.name, "not supported by xlb: %s", kw.note)
	}
}

// valueBlock reads a block of values (alloc_value_block): the lines up to
// the closing '}'.
func (p *parser) valueBlock(head Line, named bool) []Line {
	var out []Line
	if n := map[bool]int{true: 2, false: 1}[named]; len(head.Words) > n {
		p.d.warnf(head.Pos, head.Words[0], "extra parameters %q before the block: ignored (as keepalived)", strings.Join(head.Words[n:], " "))
	}
	needBOB := true
	for p.i < len(p.lines) {
		ln := p.lines[p.i]
		p.i++
		if needBOB {
			needBOB = false
			if ln.Words[0] == "{" {
				continue
			}
			p.d.warnf(ln.Pos, head.Words[0], "'{' missing at the beginning of the block")
		}
		if ln.Words[0] == "}" {
			break
		}
		out = append(out, ln)
	}
	return out
}

func find(kws []*keyword, name string) *keyword {
	for _, k := range kws {
		if k.name == name {
			return k
		}
		for _, a := range k.alias {
			if a == name {
				return k
			}
		}
	}
	return nil
}

// Value readers. A missing parameter is fatal to keepalived
// (null_strvec exits), so it is an error; an invalid or out-of-range value
// is reported and ignored by keepalived, so it is a warning and the
// keyword is ignored.

func (p *parser) arg(s *stmt, i int) (string, bool) {
	if i < len(s.Words) {
		return s.Words[i], true
	}
	p.d.errorf(s.Pos, s.kw(), "missing a parameter (keepalived stops on this line)")
	return "", false
}

func (p *parser) integer(s *stmt, i int, lo, hi int64) (int, bool) {
	w, ok := p.arg(s, i)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(w), 10, 64)
	if err != nil {
		p.d.warnf(s.Pos, s.kw(), "invalid number %q: ignored, as keepalived ignores it", w)
		return 0, false
	}
	if n < lo || n > hi {
		p.d.warnf(s.Pos, s.kw(), "%d is out of range [%d, %d]: ignored, as keepalived ignores it", n, lo, hi)
		return 0, false
	}
	return int(n), true
}

// timer reads seconds with a fraction (read_timer), lo and hi in
// microseconds (hi 0: keepalived's maximum).
func (p *parser) timer(s *stmt, i int, lo, hi int64) (time.Duration, bool) {
	w, ok := p.arg(s, i)
	if !ok {
		return 0, false
	}
	f, err := strconv.ParseFloat(w, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		p.d.warnf(s.Pos, s.kw(), "invalid number %q: ignored, as keepalived ignores it", w)
		return 0, false
	}
	if hi == 0 {
		hi = math.MaxUint32
	}
	us := f * 1e6
	if us < float64(lo) || us > float64(hi) {
		p.d.warnf(s.Pos, s.kw(), "%s is out of range [%g, %g] seconds: ignored, as keepalived ignores it", w, float64(lo)/1e6, float64(hi)/1e6)
		return 0, false
	}
	return time.Duration(us) * time.Microsecond, true
}

// command reads a script or notify command as keepalived does
// (notify_script_init): the line is split with quotes and escapes, and its
// second word is the command, itself split again when it runs, which is
// what xlb's Command does with the string.
func (p *parser) command(s *stmt) (string, bool) {
	w, err := splitQuoted(s.Text)
	if err != nil {
		p.d.errorf(s.Pos, s.kw(), "%v", err)
		return "", false
	}
	if len(w) < 2 {
		p.d.errorf(s.Pos, s.kw(), "no script given")
		return "", false
	}
	if len(w) > 2 {
		p.d.warnf(s.Pos, s.kw(), "words after the command %q are ignored, as keepalived ignores them: quote a command with arguments", w[1])
	}
	return w[1], true
}

// boolean reads an optional on/off word at i (keepalived's
// check_true_false: true, on, yes; false, off, no): true without one; an
// invalid one is reported and the keyword ignored, as keepalived does.
func (p *parser) boolean(s *stmt, i int) (bool, bool) {
	if i >= len(s.Words) {
		return true, true
	}
	switch s.Words[i] {
	case "true", "on", "yes":
		return true, true
	case "false", "off", "no":
		return false, true
	}
	p.d.warnf(s.Pos, s.kw(), "invalid value %q (want true, on, yes, false, off or no): ignored, as keepalived ignores it", s.Words[i])
	return false, false
}

// smtpAlert is the handler of a block's smtp_alert [BOOL].
func smtpAlert(get func(p *parser) *setting[bool]) func(p *parser, s *stmt) {
	return func(p *parser, s *stmt) {
		if v, ok := p.boolean(s, 1); ok {
			get(p).set(v, s.Pos)
		}
	}
}
