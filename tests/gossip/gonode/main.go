// A memberlist 0.2.2 node configured like a KapokMQ Go node (DefaultLANConfig,
// no delegate), used as an interop oracle by tests/gossip/test_interop_go.py.
// -keys installs a keyring (memberlist's SecretKey / Keyring). It prints one JSON line with its member list every 100 ms.
package main

import (
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io/ioutil"
	"log"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
)

type member struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	Port uint16 `json:"port"`
}

func main() {
	port := flag.Int("port", 7946, "bind port (UDP and TCP)")
	join := flag.String("join", "", "comma-separated seeds host:port")
	verbose := flag.Bool("v", false, "memberlist logs on stderr")
	keys := flag.String("keys", "", "comma-separated base64 gossip keys, the first primary")
	flag.Parse()

	conf := memberlist.DefaultLANConfig()
	conf.Name = fmt.Sprintf("mq:127.0.0.1:%d", *port)
	conf.BindAddr = "127.0.0.1"
	conf.BindPort = *port
	conf.AdvertiseAddr = "127.0.0.1"
	conf.AdvertisePort = *port
	if *verbose {
		conf.LogOutput = os.Stderr
	} else {
		conf.LogOutput = ioutil.Discard
	}

	if *keys != "" {
		var ring [][]byte
		for _, k := range strings.Split(*keys, ",") {
			raw, err := base64.StdEncoding.DecodeString(k)
			if err != nil {
				log.Fatalf("key: %v", err)
			}
			ring = append(ring, raw)
		}
		keyring, err := memberlist.NewKeyring(ring, ring[0])
		if err != nil {
			log.Fatalf("keyring: %v", err)
		}
		conf.Keyring = keyring
	}

	list, err := memberlist.Create(conf)
	if err != nil {
		log.Fatalf("create: %v", err)
	}
	if *join != "" {
		if _, err := list.Join(strings.Split(*join, ",")); err != nil {
			log.Fatalf("join: %v", err)
		}
	}
	enc := json.NewEncoder(os.Stdout)
	for {
		var out []member
		for _, m := range list.Members() {
			out = append(out, member{m.Name, m.Addr.String(), m.Port})
		}
		if err := enc.Encode(out); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
