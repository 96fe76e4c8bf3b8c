// A Redis pub/sub subscriber in Go (standard library only, static: CGO_ENABLED=0), the shape of
// most Go Redis clients: net.Dial (Go's own keepalive, 15 s idle and interval), SUBSCRIBE, then
// block reading messages. Prints "subscribed" once the server confirmed and, when the
// connection fails, "gone after S s: ERROR" (seconds since it subscribed); the test measures
// the time from the blackhole itself.
//
//	subscriber ADDR CHANNEL
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	conn, err := net.Dial("tcp", os.Args[1])
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	channel := os.Args[2]
	fmt.Fprintf(conn, "*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n", len(channel), channel)
	reader := bufio.NewReader(conn)
	// The confirmation: *3, $9, subscribe, $N, channel, :1 (six lines).
	for i := 0; i < 6; i++ {
		if _, err := reader.ReadString('\n'); err != nil {
			fmt.Println("subscribe:", err)
			os.Exit(1)
		}
	}
	fmt.Println("subscribed")
	start := time.Now()
	for {
		line, err := reader.ReadString('\n')
		if err != nil {
			fmt.Printf("gone after %.2f s: %v\n", time.Since(start).Seconds(), err)
			os.Exit(0)
		}
		_ = line
	}
}
