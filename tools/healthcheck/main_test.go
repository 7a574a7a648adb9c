package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
)

// serve answers one connection on 127.0.0.1 with status and returns its address and the
// request line it received.
func serve(t *testing.T, status string) (string, <-chan string) {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { listener.Close() })
	lines := make(chan string, 1)
	go func() {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		line, _ := bufio.NewReader(conn).ReadString('\n')
		lines <- strings.TrimSpace(line)
		fmt.Fprintf(conn, "HTTP/1.1 %s\r\nContent-Length: 0\r\n\r\n", status)
	}()
	return listener.Addr().String(), lines
}

func check(args ...string) (int, string) {
	var stderr bytes.Buffer
	code := run(args, &stderr)
	return code, stderr.String()
}

func TestExpectedStatusPasses(t *testing.T) {
	address, lines := serve(t, "307 Temporary Redirect")
	code, stderr := check("-method", "CONNECT", "-target", "probe.invalid:443", "http://"+address+"/", "200,307")
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if line := <-lines; line != "CONNECT probe.invalid:443 HTTP/1.1" {
		t.Fatalf("request line %q", line)
	}
}

func TestUnexpectedStatusFailsWithOneLine(t *testing.T) {
	address, _ := serve(t, "403 Forbidden")
	code, stderr := check("http://"+address+"/health", "200")
	if code != 1 || !strings.Contains(stderr, "status 403, expected 200") || strings.Count(stderr, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
}

func TestOnlyLoopbackLiteralsAreAccepted(t *testing.T) {
	for _, url := range []string{
		"http://10.0.0.1:80/", "http://[2001:db8::1]:80/", "http://localhost:80/",
		"http://www.quantconnect.com:443/", "http://0.0.0.0:80/", "http://[::ffff:10.0.0.1]:80/",
		"https://127.0.0.1:443/", "http://127.0.0.1/",
	} {
		if code, stderr := check(url, "200"); code != 1 || stderr == "" {
			t.Errorf("%s: exit %d, stderr %q", url, code, stderr)
		}
	}
	for _, hostport := range []string{"127.0.0.1:3128", "127.1.2.3:80", "[::1]:80", "[::ffff:127.0.0.1]:80"} {
		if _, err := loopback(hostport); err != nil {
			t.Errorf("%s: %v", hostport, err)
		}
	}
}

func TestHeaderInjectionIsRefused(t *testing.T) {
	for _, args := range [][]string{
		{"-target", "/a\r\nX: y", "http://127.0.0.1:1/", "200"},
		{"-host", "a b", "http://127.0.0.1:1/", "200"},
		{"-method", "GET /", "http://127.0.0.1:1/", "200"},
		{"http://127.0.0.1:1/", "20x"},
	} {
		if code, stderr := check(args...); code != 1 || stderr == "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
}
