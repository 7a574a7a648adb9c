package main

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer answers each line with "echo: " and the line, until the client half-closes.
func echoServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				lines := bufio.NewScanner(conn)
				for lines.Scan() {
					io.WriteString(conn, "echo: "+lines.Text()+"\n")
				}
			}()
		}
	}()
	return l.Addr().String()
}

func startRelay(t *testing.T, target string, maxConns int) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go serve(l, config{listen: l.Addr().String(), target: target, maxConns: maxConns, dialTimeout: time.Second})
	return l.Addr().String()
}

func TestRelayForwardsBothWaysAndPassesTheHalfClose(t *testing.T) {
	conn, err := net.Dial("tcp", startRelay(t, echoServer(t), 4))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "one\ntwo\n")
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != "echo: one\necho: two\n" {
		t.Fatalf("got %q", got)
	}
}

func TestConnectionsOverTheLimitAreClosed(t *testing.T) {
	relay := startRelay(t, echoServer(t), 1)
	first, err := net.Dial("tcp", relay)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	io.WriteString(first, "hold\n")
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(first).ReadString('\n'); err != nil || line != "echo: hold\n" {
		t.Fatalf("first connection: %q %v", line, err)
	}
	second, err := net.Dial("tcp", relay)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close()
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := second.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("second connection was not closed: %d %v", n, err)
	}
}

func TestUnreachableTargetClosesTheClient(t *testing.T) {
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	conn, err := net.Dial("tcp", startRelay(t, dead, 4))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("got %d %v", n, err)
	}
}

func TestBadArgumentsAreRefusedWithTheUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-listen", ":8080"},
		{"-listen", ":8080", "-to", "gateway"},
		{"-listen", ":8080", "-to", "gateway:8080", "-max-conns", "0"},
		{"-listen", ":8080", "-to", "gateway:8080", "extra"},
	} {
		if _, err := parse(args); err == nil {
			t.Errorf("%q accepted", args)
		} else if !strings.Contains(err.Error(), "usage") && !strings.Contains(err.Error(), "-") {
			t.Errorf("%q: unclear error %v", args, err)
		}
	}
}
