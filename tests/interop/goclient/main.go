// A stand-in for the original KapokMQ Go client, written for these tests: gorilla/websocket,
// the same handshake by exact string comparison, WriteJSON for sends (a trailing newline),
// replies paired with sends by order, pushes decoded with encoding/json into int64 fields.
//
//	goclient produce WSURL N DELAY   -> prints "ok N" when every send got exactly "ok"
//	goclient consume WSURL N         -> prints each message as JSON, acks it
//	goclient wrongkey WSURL KEY      -> prints the server's answers to a wrong key
//	goclient slave WSURL N           -> as the original slave: /Sync/Conn, json.Unmarshal of
//	                                    each frame into the message struct; prints N of them,
//	                                    then "extra" for any frame within a further second
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

type sendMessage struct {
	MessageData string
	DelayTime   int64
}

type message struct {
	MessageCode  string
	MessageData  string
	Topic        string
	CreateTime   int64
	DelayTime    int64
	ConsumedTime int64
	Status       int
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func login(url string, key string) *websocket.Conn {
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		fail("dial: %v", err)
	}
	for {
		kind, data, err := conn.ReadMessage()
		if err != nil {
			fail("handshake read: %v", err)
		}
		if kind != websocket.TextMessage {
			fail("handshake frame type %d", kind)
		}
		switch string(data) {
		case "Please enter the secret key":
			if err := conn.WriteMessage(websocket.TextMessage, []byte(key)); err != nil {
				fail("send key: %v", err)
			}
		case "Secret key matching error":
			fail("Secret key matching error")
		case "Secret key matching succeeded":
			return conn
		default:
			fail("unexpected handshake text %q", data)
		}
	}
}

func produce(url string, n int, delay int64) {
	conn := login(url, "test")
	defer conn.Close()
	for i := 0; i < n; i++ {
		if err := conn.WriteJSON(sendMessage{MessageData: fmt.Sprintf("go-%d", i), DelayTime: delay}); err != nil {
			fail("send: %v", err)
		}
		_, reply, err := conn.ReadMessage()
		if err != nil {
			fail("reply: %v", err)
		}
		if string(reply) != "ok" {
			fail("reply %d was %q", i, reply)
		}
	}
	fmt.Printf("ok %d\n", n)
}

func consume(url string, n int) {
	conn := login(url, "test")
	defer conn.Close()
	for i := 0; i < n; i++ {
		kind, data, err := conn.ReadMessage()
		if err != nil {
			fail("read: %v", err)
		}
		if kind != websocket.TextMessage {
			fail("frame type %d", kind)
		}
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			fail("decode %q: %v", data, err)
		}
		out, _ := json.Marshal(m)
		fmt.Println(string(out))
		if err := conn.WriteMessage(websocket.TextMessage, []byte(m.MessageCode)); err != nil {
			fail("ack: %v", err)
		}
	}
}

func slave(url string, n int) {
	conn := login(url, "test")
	defer conn.Close()
	for i := 0; i < n; i++ {
		_, data, err := conn.ReadMessage()
		if err != nil {
			fail("read: %v", err)
		}
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			fail("decode %q: %v", data, err)
		}
		out, _ := json.Marshal(m)
		fmt.Println(string(out))
	}
	conn.SetReadDeadline(time.Now().Add(time.Second))
	if _, data, err := conn.ReadMessage(); err == nil {
		fmt.Printf("extra %s\n", data)
	}
}

func wrongKey(url string, key string) {
	conn, _, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		fail("dial: %v", err)
	}
	defer conn.Close()
	_, prompt, _ := conn.ReadMessage()
	fmt.Println(string(prompt))
	conn.WriteMessage(websocket.TextMessage, []byte(key))
	for i := 0; i < 2; i++ {
		_, data, err := conn.ReadMessage()
		if err != nil {
			fail("read: %v", err)
		}
		fmt.Println(string(data))
	}
}

func main() {
	if len(os.Args) < 4 {
		fail("usage: goclient produce|consume|wrongkey URL ARG...")
	}
	n, _ := strconv.Atoi(os.Args[3])
	switch os.Args[1] {
	case "produce":
		delay, _ := strconv.ParseInt(os.Args[4], 10, 64)
		produce(os.Args[2], n, delay)
	case "consume":
		consume(os.Args[2], n)
	case "slave":
		slave(os.Args[2], n)
	case "wrongkey":
		wrongKey(os.Args[2], os.Args[3])
	default:
		fail("unknown mode %s", os.Args[1])
	}
}
