// Command relay forwards TCP connections from one listening address to one fixed target and
// nothing else. It is the gateway's front door: the only qcstack container on a network the host
// can reach (compose publishes its port on 127.0.0.1), so the gateway itself, which holds the
// brokerage credentials, stays on internal networks with no route out.
//
//	relay -listen :8080 -to gateway:8080 [-max-conns 128] [-dial-timeout 3s]
//
// The target is fixed at start: nothing a client sends changes where bytes go. Connections over
// -max-conns are closed at once rather than queued.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

const usage = "usage: relay -listen ADDR -to HOST:PORT [-max-conns N] [-dial-timeout D]"

type config struct {
	listen      string
	target      string
	maxConns    int
	dialTimeout time.Duration
}

func parse(args []string) (config, error) {
	var c config
	flags := flag.NewFlagSet("relay", flag.ContinueOnError)
	flags.SetOutput(io.Discard)
	flags.StringVar(&c.listen, "listen", "", "address to listen on")
	flags.StringVar(&c.target, "to", "", "host:port every connection is forwarded to")
	flags.IntVar(&c.maxConns, "max-conns", 128, "connections open at once; more are closed")
	flags.DurationVar(&c.dialTimeout, "dial-timeout", 3*time.Second, "time to reach the target")
	if err := flags.Parse(args); err != nil {
		return c, fmt.Errorf("%w\n%s", err, usage)
	}
	if flags.NArg() != 0 || c.listen == "" || c.target == "" {
		return c, errors.New(usage)
	}
	if _, _, err := net.SplitHostPort(c.target); err != nil {
		return c, fmt.Errorf("-to %q: %w", c.target, err)
	}
	if c.maxConns < 1 || c.dialTimeout <= 0 {
		return c, errors.New("-max-conns and -dial-timeout must be positive")
	}
	return c, nil
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("relay: ")
	c, err := parse(os.Args[1:])
	if err != nil {
		log.Fatal(err)
	}
	listener, err := net.Listen("tcp", c.listen)
	if err != nil {
		log.Fatal(err)
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		listener.Close()
	}()
	log.Printf("forwarding %s to %s", listener.Addr(), c.target)
	if err := serve(listener, c); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Fatal(err)
	}
}

// serve accepts until the listener is closed, forwarding each connection to the target.
func serve(listener net.Listener, c config) error {
	slots := make(chan struct{}, c.maxConns)
	for {
		conn, err := listener.Accept()
		if err != nil {
			return err
		}
		select {
		case slots <- struct{}{}:
			go func() {
				defer func() { <-slots }()
				forward(conn.(*net.TCPConn), c)
			}()
		default:
			conn.Close()
		}
	}
}

func forward(client *net.TCPConn, c config) {
	defer client.Close()
	conn, err := net.DialTimeout("tcp", c.target, c.dialTimeout)
	if err != nil {
		log.Printf("cannot reach %s: %v", c.target, err)
		return
	}
	upstream := conn.(*net.TCPConn)
	defer upstream.Close()
	var done sync.WaitGroup
	done.Add(2)
	pipe := func(dst, src *net.TCPConn) {
		defer done.Done()
		io.Copy(dst, src)
		dst.CloseWrite() // pass the half-close on; the other direction may still be talking
	}
	go pipe(upstream, client)
	go pipe(client, upstream)
	done.Wait()
}
