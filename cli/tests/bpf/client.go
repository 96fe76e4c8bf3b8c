// A Go client for the eBPF policy tests, built static (CGO_ENABLED=0): net.Dial (which sets
// Go's own keepalive, 15 s idle and interval, after connecting), then what getsockopt reads
// back on the connected socket.
//
//	client ADDR            one line: keepalive=.. idle=.. intvl=.. cnt=.. uto=..
package main

import (
	"fmt"
	"net"
	"os"
	"syscall"
)

func main() {
	conn, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	raw, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		fmt.Fprintln(os.Stderr, "syscallconn:", err)
		os.Exit(1)
	}
	var line string
	raw.Control(func(fd uintptr) {
		get := func(level, name int) int {
			value, err := syscall.GetsockoptInt(int(fd), level, name)
			if err != nil {
				return -1
			}
			return value
		}
		line = fmt.Sprintf("role=client keepalive=%d idle=%d intvl=%d cnt=%d uto=%d",
			get(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE),
			get(syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE),
			get(syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL),
			get(syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT),
			get(syscall.IPPROTO_TCP, 18))
	})
	fmt.Println(line)
	conn.Close()
}
