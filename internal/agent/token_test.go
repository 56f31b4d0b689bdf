package agent

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func goodToken() *Token {
	return &Token{Version: 1, Cluster: "c1", ID: "tok-0123", Secret: "s3cret-0123456789", Member: "m2",
		Address: "198.18.0.2:7000", Addrs: []string{"198.18.0.1:7001", "[2001:db8::1]:7001"},
		Fingerprint: strings.Repeat("ab", 32), Expires: time.Date(2025, 3, 1, 13, 0, 0, 0, time.UTC)}
}

// rawToken encodes any JSON value as a token.
func rawToken(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// tokenWith returns a good token changed by f, as a map so fields can also
// be removed or given a wrong type.
func tokenWith(t *testing.T, f func(map[string]any)) string {
	t.Helper()
	var m map[string]any
	b, _ := json.Marshal(goodToken())
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	return rawToken(t, m)
}

func TestTokenRoundTrip(t *testing.T) {
	tok := goodToken()
	s := tok.Encode()
	if !strings.HasPrefix(s, "vigil-join-") || strings.ContainsAny(s, " \n+/=") {
		t.Fatalf("token %q is not one copyable word", s)
	}
	got, err := DecodeToken(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, tok) {
		t.Fatalf("round trip:\n%+v\nwant\n%+v", got, tok)
	}
	// Copying from a terminal adds white space around it.
	if _, err := DecodeToken("  " + s + "\r\n"); err != nil {
		t.Fatalf("token with surrounding white space: %v", err)
	}
}

func TestDecodeTokenDamaged(t *testing.T) {
	good := goodToken().Encode()
	for _, tc := range []struct {
		name  string
		token string
		want  []string
	}{
		{"empty", "", []string{"not a vigil join token", "vigil-join-", "vigil member add"}},
		{"no prefix", strings.TrimPrefix(good, "vigil-join-"), []string{"not a vigil join token"}},
		{"other prefix", "vigil-jion-" + strings.TrimPrefix(good, "vigil-join-"), []string{"not a vigil join token"}},
		{"bad base64", good[:len(good)-3] + "*!*", []string{"damaged", "not base64url", "copy it again whole"}},
		{"std base64 padding", good + "==", []string{"damaged", "not base64url"}},
		{"cut short", good[:len(good)/2], []string{"damaged", "copy it again whole"}},
		{"bad json", tokenPrefix + base64.RawURLEncoding.EncodeToString([]byte(`{"v":1,`)), []string{"damaged", "copy it again whole"}},
		{"json array", rawToken(t, []int{1}), []string{"damaged"}},
		{"wrong type", tokenWith(t, func(m map[string]any) { m["v"] = "1" }), []string{"damaged"}},
		{"version 2", tokenWith(t, func(m map[string]any) { m["v"] = 2 }), []string{"version 2 is not supported", "same vigil version"}},
		{"version missing", tokenWith(t, func(m map[string]any) { delete(m, "v") }), []string{"version 0 is not supported"}},
		{"bad cluster name", tokenWith(t, func(m map[string]any) { m["c"] = "C 1" }), []string{"cluster name in the token", `"C 1"`}},
		{"bad member name", tokenWith(t, func(m map[string]any) { m["m"] = "" }), []string{"member name in the token", "is not valid"}},
		{"missing secret", tokenWith(t, func(m map[string]any) { delete(m, "s") }), []string{"damaged", "secret"}},
		{"secret too long", tokenWith(t, func(m map[string]any) { m["s"] = strings.Repeat("s", 129) }), []string{"damaged", "secret"}},
		{"missing id", tokenWith(t, func(m map[string]any) { m["t"] = "" }), []string{"damaged", "missing id"}},
		{"id too long", tokenWith(t, func(m map[string]any) { m["t"] = strings.Repeat("i", 65) }), []string{"damaged"}},
		{"short fingerprint", tokenWith(t, func(m map[string]any) { m["f"] = strings.Repeat("ab", 31) }), []string{"damaged", "CA fingerprint"}},
		{"long fingerprint", tokenWith(t, func(m map[string]any) { m["f"] = strings.Repeat("ab", 33) }), []string{"damaged", "CA fingerprint"}},
		{"no addresses", tokenWith(t, func(m map[string]any) { m["p"] = []string{} }), []string{"lists 0 member addresses", "1-64"}},
		{"addresses missing", tokenWith(t, func(m map[string]any) { delete(m, "p") }), []string{"lists 0 member addresses"}},
		{"too many addresses", tokenWith(t, func(m map[string]any) {
			a := make([]string, 65)
			for i := range a {
				a[i] = "198.18.0.1:7001"
			}
			m["p"] = a
		}), []string{"lists 65 member addresses", "1-64"}},
		{"bad address", tokenWith(t, func(m map[string]any) { m["p"] = []string{"198.18.0.1:7001", "198.18.0.2"} }), []string{"member address in the token", `"198.18.0.2"`, "HOST:PORT"}},
		{"wildcard address", tokenWith(t, func(m map[string]any) { m["p"] = []string{"0.0.0.0:7001"} }), []string{"member address in the token", "wildcard"}},
		{"too long", good + strings.Repeat("A", maxToken), []string{"longer than 4096", "copy it again"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := DecodeToken(tc.token)
			if err == nil {
				t.Fatalf("DecodeToken accepted it: %+v", tok)
			}
			if tok != nil {
				t.Errorf("a token returned with an error")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzDecodeToken(f *testing.F) {
	f.Add(goodToken().Encode())
	tok := goodToken()
	tok.Addrs = []string{"node-1.example:7001"}
	tok.Expires = time.Time{}
	f.Add(tok.Encode())
	f.Add("vigil-join-")
	f.Add("vigil-join-e30")    // {}
	f.Add("vigil-join-bnVsbA") // null
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := DecodeToken(s)
		if err != nil {
			if tok != nil {
				t.Fatalf("a token with an error")
			}
			if err.Error() == "" {
				t.Fatalf("empty error")
			}
			return
		}
		if tok.Version != 1 || tok.Secret == "" || tok.ID == "" || len(tok.Fingerprint) != 64 || len(tok.Addrs) == 0 {
			t.Fatalf("accepted a token that breaks its own checks: %+v", tok)
		}
		// An accepted token re-encodes to one that decodes the same.
		again := tok.Encode()
		if len(again) > maxToken {
			return // JSON escaping can make the re-encoding longer
		}
		tok2, err := DecodeToken(again)
		if err != nil {
			t.Fatalf("re-encoded token refused: %v", err)
		}
		if tok2.Encode() != again {
			t.Fatalf("token changed in a round trip:\n%+v\n%+v", tok, tok2)
		}
	})
}
