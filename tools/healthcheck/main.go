// Command healthcheck sends one HTTP request to a server on the loopback interface and exits 0
// when the response status is one of the expected ones, 1 otherwise with a one-line reason on
// stderr. It is the HEALTHCHECK of qcstack's FROM-scratch images, which have no shell or curl.
//
//	healthcheck [-method M] [-target T] [-host H] [-timeout D] http://127.0.0.1:PORT/PATH STATUS[,STATUS...]
//
// It connects only to a loopback IP literal (127.0.0.0/8 or ::1): no names are resolved and any
// other address is refused, so the check can never be turned into a way out of the container.
// -target replaces the request-target sent on the request line (an absolute URI or, for CONNECT,
// host:port) without changing where the request goes; nothing after the status line is read.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const usage = "usage: healthcheck [-method M] [-target T] [-host H] [-timeout D] " +
	"http://127.0.0.1:PORT/PATH STATUS[,STATUS...]"

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// request is one validated check: where to connect, what to send, which statuses pass.
type request struct {
	address  netip.AddrPort
	method   string
	target   string
	host     string
	expected map[int]bool
	timeout  time.Duration
}

func run(args []string, stderr io.Writer) int {
	req, err := parse(args)
	if err == nil {
		err = req.check()
	}
	if err != nil {
		fmt.Fprintf(stderr, "healthcheck: %s\n", oneLine(err.Error()))
		return 1
	}
	return 0
}

func parse(args []string) (*request, error) {
	flags := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	method := flags.String("method", "GET", "request method")
	target := flags.String("target", "", "request-target for the request line (default: the URL's path)")
	host := flags.String("host", "", "Host header (default: the target's authority, else the URL's)")
	timeout := flags.Duration("timeout", 3*time.Second, "limit for the whole check")
	if err := flags.Parse(args); err != nil {
		return nil, fmt.Errorf("%v; %s", err, usage)
	}
	if flags.NArg() < 2 {
		return nil, errors.New(usage)
	}
	if *timeout <= 0 {
		return nil, errors.New("-timeout must be positive")
	}
	u, err := url.Parse(flags.Arg(0))
	if err != nil || u.Scheme != "http" || u.User != nil || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http://IP:PORT/ URL", flags.Arg(0))
	}
	address, err := loopback(u.Host)
	if err != nil {
		return nil, err
	}
	req := &request{address: address, method: *method, timeout: *timeout, expected: map[int]bool{}}
	if !isToken(req.method) {
		return nil, fmt.Errorf("method %q is not an HTTP token", req.method)
	}
	req.target = *target
	if req.target == "" {
		req.target = u.RequestURI()
	}
	req.host = *host
	if req.host == "" {
		req.host = u.Host
		if t, err := url.Parse(req.target); err == nil && t.Host != "" {
			req.host = t.Host
		} else if req.method == "CONNECT" {
			req.host = req.target
		}
	}
	for _, field := range []string{req.target, req.host} {
		if field == "" || strings.IndexFunc(field, func(r rune) bool { return r <= ' ' || r >= 0x7f }) >= 0 {
			return nil, fmt.Errorf("%q is empty or has spaces or control characters", field)
		}
	}
	for _, arg := range flags.Args()[1:] {
		for _, status := range strings.Split(arg, ",") {
			code, err := strconv.Atoi(status)
			if err != nil || code < 100 || code > 599 {
				return nil, fmt.Errorf("expected status %q is not a number from 100 to 599", status)
			}
			req.expected[code] = true
		}
	}
	return req, nil
}

// loopback accepts IP:PORT where IP is a loopback literal; names are never resolved.
func loopback(hostport string) (netip.AddrPort, error) {
	address, err := netip.ParseAddrPort(hostport)
	if err != nil || address.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("%q is not IP:PORT (names are not resolved; use 127.0.0.1)", hostport)
	}
	if !address.Addr().Unmap().IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("refusing %s: only loopback addresses may be checked", address)
	}
	return address, nil
}

// refuseNonLoopback runs on the socket before connect(2), on the address actually dialled.
func refuseNonLoopback(network, address string, _ syscall.RawConn) error {
	if _, err := loopback(address); err != nil {
		return err
	}
	return nil
}

func (r *request) check() error {
	dialer := net.Dialer{Timeout: r.timeout, Control: refuseNonLoopback}
	conn, err := dialer.Dial("tcp", r.address.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(r.timeout)); err != nil {
		return err
	}
	_, err = fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: qcstack-healthcheck\r\n"+
		"Connection: close\r\n\r\n", r.method, r.target, r.host)
	if err != nil {
		return err
	}
	line, err := bufio.NewReader(io.LimitReader(conn, 1024)).ReadString('\n')
	if err != nil {
		return fmt.Errorf("%s: no status line: %v", r.address, err)
	}
	code, err := statusCode(line)
	if err != nil {
		return fmt.Errorf("%s: %v", r.address, err)
	}
	if !r.expected[code] {
		return fmt.Errorf("%s %s via %s: status %d, expected %s", r.method, r.target, r.address, code, r.expectedList())
	}
	return nil
}

func statusCode(line string) (int, error) {
	fields := strings.Fields(line)
	if len(fields) < 2 || !strings.HasPrefix(fields[0], "HTTP/1.") || len(fields[1]) != 3 {
		return 0, fmt.Errorf("not an HTTP/1.x status line: %q", strings.TrimSpace(line))
	}
	code, err := strconv.Atoi(fields[1])
	if err != nil || code < 100 {
		return 0, fmt.Errorf("bad status code in %q", strings.TrimSpace(line))
	}
	return code, nil
}

func (r *request) expectedList() string {
	codes := make([]string, 0, len(r.expected))
	for code := 100; code < 600; code++ {
		if r.expected[code] {
			codes = append(codes, strconv.Itoa(code))
		}
	}
	return strings.Join(codes, " or ")
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r > 0x7e || r <= ' ' || strings.ContainsRune("\"(),/:;<=>?@[\\]{}", r) {
			return false
		}
	}
	return true
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
