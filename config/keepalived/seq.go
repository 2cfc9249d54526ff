package keepalived

// keepalived's sequences and lists (lib/parser.c add_seq, add_lst): part of
// the line preprocessor in lex.go.

import (
	"fmt"
	"strconv"
	"strings"
)

// sequence expands "~SEQ(var, start, step, end) rest", "~SEQx(...)" and
// "~LST(var, v1, v2...)" / "~LST({a,b}, {1,2}, ...)": the rest is
// processed once per value, the variables defined each time; several on
// one line nest, the first outermost.
func (l *lexer) sequence(text string, pos Pos, src *source) []pending {
	isList := strings.HasPrefix(text, "~LST")
	p := text[4:]
	hex := false
	if !isList && strings.HasPrefix(p, "x") {
		hex, p = true, p[1:]
	}
	p = strings.TrimLeft(p, " \t")
	kw := text[:len(text)-len(p)]
	kw = strings.TrimSpace(kw)
	closeAt := -1
	if strings.HasPrefix(p, "(") {
		depth := 0
		for i := 0; i < len(p); i++ {
			switch p[i] {
			case '(', '{':
				depth++
			case ')', '}':
				depth--
			}
			if depth == 0 && p[i] == ')' {
				closeAt = i
				break
			}
		}
	}
	if closeAt < 0 {
		l.diags.errorf(pos, kw, "invalid %s specification %q", kw, text)
		return nil
	}
	args := p[1:closeAt]
	rest := strings.TrimLeft(p[closeAt+1:], " \t")
	// Definitions in the parameters are replaced first.
	if strings.Contains(args, "$") {
		args, _, _ = l.substitute(args, pos, src)
	}
	var vars []string
	var values [][]string
	if isList {
		var ok bool
		vars, values, ok = parseList(args)
		if !ok {
			l.diags.errorf(pos, kw, "invalid ~LST specification %q", text)
			return nil
		}
	} else {
		v, vals, err := parseSeq(args, hex)
		if err != nil {
			l.diags.errorf(pos, kw, "invalid %s specification %q: %v", kw, text, err)
			return nil
		}
		vars = []string{v}
		for _, x := range vals {
			values = append(values, []string{x})
		}
	}
	if len(values) > maxLines {
		l.diags.errorf(pos, kw, "%s makes more than %d lines", kw, maxLines)
		return nil
	}
	for _, vs := range values {
		for i, v := range vars {
			l.defs[v] = &def{value: vs[i]}
		}
		if d := l.processAll(pending{text: rest, pos: pos}, src); d != nil {
			l.diags.errorf(pos, kw, "a multiline definition in a sequence is not supported")
			return nil
		}
		if l.stopped {
			return nil
		}
	}
	return nil
}

// parseSeq parses "var, [start,] [step,] end" (add_seq).
func parseSeq(args string, hex bool) (string, []string, error) {
	parts := strings.Split(args, ",")
	v := strings.TrimSpace(parts[0])
	if v == "" || strings.ContainsAny(v, " \t") {
		return "", nil, fmt.Errorf("no variable")
	}
	var nums []int64
	for _, s := range parts[1:] {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 0, 64)
		if err != nil {
			return "", nil, fmt.Errorf("%q is not a number", strings.TrimSpace(s))
		}
		nums = append(nums, n)
	}
	var start, step, end int64
	switch len(nums) {
	case 1:
		end = nums[0]
		step, start = 1, 1
		if end < 1 {
			step = -1
		}
		if end < 0 {
			start = -1
		}
	case 2:
		start, end = nums[0], nums[1]
		step = 1
		if start > end {
			step = -1
		}
	case 3:
		start, step, end = nums[0], nums[1], nums[2]
		if step == 0 || (start < end && step < 0) || (start > end && step > 0) {
			return "", nil, fmt.Errorf("the step does not lead from start to end")
		}
	default:
		return "", nil, fmt.Errorf("want 1 to 3 numbers")
	}
	if hex && (start < 0 || end < 0) {
		return "", nil, fmt.Errorf("~SEQx is only valid for positive numbers")
	}
	// The count, before any line is made: (end-start)/step+1, in
	// unsigned arithmetic (the span of two int64s fits in a uint64).
	var span, stride uint64
	if step > 0 {
		span, stride = uint64(end)-uint64(start), uint64(step)
	} else {
		span, stride = uint64(start)-uint64(end), -uint64(step)
	}
	if (step > 0 && start <= end) || (step < 0 && start >= end) {
		if span/stride >= maxLines {
			return "", nil, fmt.Errorf("it makes %d lines or more, more than %d", span/stride, maxLines)
		}
	}
	var out []string
	for n := start; (step > 0 && n <= end) || (step < 0 && n >= end); n += step {
		if len(out) >= maxLines {
			break
		}
		if hex {
			out = append(out, strconv.FormatInt(n, 16))
		} else {
			out = append(out, strconv.FormatInt(n, 10))
		}
	}
	return v, out, nil
}

// parseList parses "var, v1, v2" or "{a, b}, {1, 2}, {3, 4}".
func parseList(args string) ([]string, [][]string, bool) {
	items := splitTop(args)
	if len(items) < 2 {
		return nil, nil, false
	}
	unbrace := func(s string) ([]string, bool) {
		s = strings.TrimSpace(s)
		if strings.HasPrefix(s, "{") {
			if !strings.HasSuffix(s, "}") {
				return nil, false
			}
			var out []string
			for _, x := range strings.Split(s[1:len(s)-1], ",") {
				out = append(out, strings.TrimSpace(x))
			}
			return out, true
		}
		return []string{s}, true
	}
	vars, ok := unbrace(items[0])
	if !ok {
		return nil, nil, false
	}
	for _, v := range vars {
		if v == "" {
			return nil, nil, false
		}
	}
	var values [][]string
	for _, it := range items[1:] {
		vs, ok := unbrace(it)
		if !ok || len(vs) != len(vars) {
			return nil, nil, false
		}
		values = append(values, vs)
	}
	return vars, values, true
}

// splitTop splits at commas outside braces.
func splitTop(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '{':
			depth++
		case '}':
			depth--
		case ',':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}
