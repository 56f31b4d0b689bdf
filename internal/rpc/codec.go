package rpc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"

	"google.golang.org/grpc/credentials"
)

// jsonCodec encodes node-service messages as JSON. The messages are Go
// structs shared by both ends; JSON keeps them readable in captures and needs
// no code generation.
type jsonCodec struct{}

func (jsonCodec) Marshal(v any) ([]byte, error)   { return json.Marshal(v) }
func (jsonCodec) Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
func (jsonCodec) Name() string                    { return "json" }

// muxCreds are the server credentials for connections the mux has already
// taken through the TLS handshake: they only expose the TLS state to gRPC.
type muxCreds struct{}

func (muxCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, credentials.ErrConnDispatched
}

func (muxCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return nil, nil, net.ErrClosed
	}
	return c, credentials.TLSInfo{State: tc.ConnectionState(), CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (muxCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}
func (c muxCreds) Clone() credentials.TransportCredentials { return c }
func (muxCreds) OverrideServerName(string) error           { return nil }
