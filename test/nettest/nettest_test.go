package nettest

import (
	"net"
	"testing"
	"time"
)

func TestVethPingAndDo(t *testing.T) {
	a, b := NewNS(t, "a"), NewNS(t, "b")
	Veth(t, a, "eth0", b, "eth0")
	Addr(t, a, "eth0", "192.0.2.1/24")
	Addr(t, b, "eth0", "192.0.2.2/24")
	a.MustRun(t, "ping", "-c1", "-W2", "192.0.2.2")

	var ln net.Listener
	if err := b.Do(func() (err error) { ln, err = net.Listen("tcp", "192.0.2.2:7000"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	var conn net.Conn
	if err := a.Do(func() (err error) { conn, err = net.DialTimeout("tcp", "192.0.2.2:7000", 2*time.Second); return err }); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := conn.Read(buf); err != nil || string(buf) != "hi" {
		t.Fatalf("read %q %v", buf, err)
	}
}
