package keepalived

import "time"

// The keepalived side: what the keyword handlers fill, close to
// keepalived's own data (global_data.h, vrrp.h, check_data.h), each value
// with the line it was set on. A repeated keyword overwrites.

type setting[T any] struct {
	v   T
	pos Pos
	ok  bool
}

func (s *setting[T]) set(v T, pos Pos) { s.v, s.pos, s.ok = v, pos, true }

// or returns the value, or def when it is not set.
func (s setting[T]) or(def T) T {
	if s.ok {
		return s.v
	}
	return def
}

type kaConfig struct {
	routerID       setting[string]
	scriptUser     setting[string]
	scriptGroup    setting[string]
	scriptSecurity setting[bool]
	tcp, tcpfin    setting[time.Duration]
	udp            setting[time.Duration]
	vrrpVersion    setting[int]
	garpDelay      setting[time.Duration]
	garpRepeat     setting[int]
	garpRefresh    setting[time.Duration]
	garpRefreshRep setting[int]
	garpInterval   setting[time.Duration]
	gnaInterval    setting[time.Duration]
	// Mail alerts (global_defs).
	emails           []entry
	emailFrom        setting[string]
	smtpServer       setting[string] // HOST:PORT, as xlb writes it
	smtpHelo         setting[string]
	smtpTimeout      setting[time.Duration]
	smtpAlert        setting[bool]
	smtpAlertVRRP    setting[bool]
	smtpAlertChecker setting[bool]
	noEmailFaults    setting[bool]
	scripts          []*kaScript
	groups           []*kaGroup
	instances        []*kaInstance
	vsGroups         []*kaVSGroup
	services         []*kaVS
	trackFiles       []*kaTrackFile
	firstPos         Pos
}

type kaScript struct {
	pos      Pos
	name     string
	script   setting[string]
	interval setting[time.Duration]
	timeout  setting[time.Duration]
	weight   setting[int]
	rise     setting[int]
	fall     setting[int]
}

type entry struct {
	pos   Pos
	words []string
}

type kaGroup struct {
	pos       Pos
	name      string
	members   []entry
	notify    map[string]setting[string]
	smtpAlert setting[bool]
}

type kaInstance struct {
	pos            Pos
	name           string
	iface          setting[string]
	state          setting[string]
	vrid           setting[int]
	priority       setting[int]
	version        setting[int]
	advert         setting[time.Duration]
	nopreempt      setting[bool]
	preemptDelay   setting[time.Duration]
	authType       setting[string]
	authPass       setting[string]
	vips           []entry
	srcIP          setting[string]
	peers          []entry
	trackIfs       []entry
	trackScripts   []entry
	notify         map[string]setting[string]
	garpDelay      setting[time.Duration]
	garpRepeat     setting[int]
	garpRefresh    setting[time.Duration]
	garpRefreshRep setting[int]
	garpInterval   setting[time.Duration]
	gnaInterval    setting[time.Duration]
	useVMAC        setting[bool]
	smtpAlert      setting[bool]
}

type kaVSGroup struct {
	pos     Pos
	name    string
	entries []entry
}

// checkDefaults are the checker settings a virtual server and a real
// server may give their checkers (keepalived 2 inherits them).
type checkDefaults struct {
	delayLoop        setting[time.Duration]
	connectTimeout   setting[time.Duration]
	retry            setting[int]
	delayBeforeRetry setting[time.Duration]
	virtualhost      setting[string]
	warmup           setting[time.Duration]
}

// kaTrackFile is a top-level track_file (vrrp_track_file) block, which a
// FILE_CHECK names.
type kaTrackFile struct {
	pos     Pos
	name    string
	file    setting[string]
	weight  setting[int]
	reverse bool
}

type kaVS struct {
	pos         Pos
	kind        string // "addr", "fwmark" or "group"
	addr        string
	port        int
	group       string
	protocol    setting[string]
	sched       setting[string]
	method      setting[string]
	tunType     setting[string]
	tunPort     setting[int]
	persistence setting[int]
	quorum      setting[int]
	hysteresis  setting[int]
	quorumUp    setting[string]
	quorumDown  setting[string]
	alpha       setting[bool]
	sorry       setting[string]
	sorryPort   int
	defaults    checkDefaults
	reals       []*kaRS
	smtpAlert   setting[bool]
}

type kaRS struct {
	pos       Pos
	addr      string
	port      int // 0: none given
	weight    setting[int]
	upper     setting[int] // uthreshold
	lower     setting[int] // lthreshold
	alpha     setting[bool]
	defaults  checkDefaults
	checkers  []*kaChecker
	smtpAlert setting[bool]
}

type kaChecker struct {
	pos         Pos
	kind        string // the keyword: TCP_CHECK, HTTP_GET, ...
	supported   bool
	connectIP   setting[string]
	connectPort setting[int]
	bindto      setting[string]
	defaults    checkDefaults
	urls        []*kaURL
	sni         setting[bool]
	httpProto   setting[string]
	miscPath    setting[string]
	miscTimeout setting[time.Duration]
	miscDynamic setting[bool]
	payload     setting[string]
	reply       setting[string] // require_reply: "" any reply
	dnsType     setting[string]
	dnsName     setting[string]
	helo        setting[string]
	hosts       []*kaChecker // SMTP_CHECK host blocks
	trackFile   setting[string]
	fileWeight  setting[int]
	fileReverse bool
}

type kaURL struct {
	pos         Pos
	path        setting[string]
	status      setting[[]int]
	regex       setting[string]
	virtualhost setting[string]
	digest      setting[string]
}
