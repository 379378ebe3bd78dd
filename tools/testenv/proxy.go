package testenv

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy forwards TCP to a target until Trip bytes went upstream in total;
// then it cuts every connection and refuses new ones: an upload that
// fails halfway and a network that stays down.
type Proxy struct {
	Addr    string
	Trip    int64
	sent    atomic.Int64
	tripped atomic.Bool
	l       net.Listener
	mu      sync.Mutex
	conns   []net.Conn
}

// StartProxy listens on a free port of host (127.0.0.1, or an address
// the test's containers reach) and forwards to target.
func StartProxy(t testing.TB, host, target string, trip int64) *Proxy {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: l.Addr().String(), Trip: trip, l: l}
	t.Cleanup(func() { l.Close(); p.cut() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if p.tripped.Load() {
				c.Close()
				continue
			}
			u, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, c, u)
			p.mu.Unlock()
			go func() { io.Copy(c, u); c.Close() }()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if p.sent.Add(int64(n)) > p.Trip {
							p.tripped.Store(true)
							p.cut()
							return
						}
						if _, werr := u.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				u.Close()
			}()
		}
	}()
	return p
}

// Tripped reports whether the proxy has cut the line.
func (p *Proxy) Tripped() bool { return p.tripped.Load() }

func (p *Proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
