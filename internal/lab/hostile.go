package lab

import (
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
)

// TLSGet is a hostile or careless HTTPS client (vigil-lab tls-get): it GETs
// url over TLS 1.3 without checking the server, showing the client
// certificate in certFile/keyFile if given and the API token if given, and
// returns the status code and body.
func TLSGet(url, certFile, keyFile, token string, timeout time.Duration) (int, string, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return 0, "", err
		}
		// Shown whatever CAs the server names, as a hostile client would.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	c := &http.Client{Timeout: timeout, Transport: &http.Transport{TLSClientConfig: tc, DisableKeepAlives: true}}
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b), err
}

// GossipJoin is a host with its own gossip key (vigil-lab gossip-join): it
// starts a memberlist node on bind and tries to join the member at addr.
// It returns how many nodes it came to see and the join's error.
func GossipJoin(keyHex, bind, addr string, wait time.Duration) (int, error) {
	key, err := hex.DecodeString(keyHex)
	if err != nil {
		return 0, fmt.Errorf("--key: %v", err)
	}
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return 0, fmt.Errorf("--bind: %v", err)
	}
	cfg := memberlist.DefaultLANConfig()
	cfg.Name, cfg.BindAddr, cfg.AdvertiseAddr = "intruder", host, host
	cfg.BindPort, _ = strconv.Atoi(port)
	cfg.AdvertisePort = cfg.BindPort
	cfg.SecretKey, cfg.GossipVerifyIncoming, cfg.GossipVerifyOutgoing = key, true, true
	cfg.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(cfg)
	if err != nil {
		return 0, err
	}
	defer ml.Shutdown()
	_, joinErr := ml.Join([]string{addr})
	// Gossip on for a while, so the members get its packets too.
	time.Sleep(wait)
	return ml.NumMembers(), joinErr
}
