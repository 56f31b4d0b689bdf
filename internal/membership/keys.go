package membership

import "bytes"

// The gossip keys, for `vigil keyring rotate`: a new key is installed on
// every member (gossip is opened with either), then used (gossip is sealed
// with it), then the old one is removed.

// InstallKey adds a key gossip is opened with.
func (m *Membership) InstallKey(k []byte) error { return m.keyring.AddKey(k) }

// UseKey seals gossip with an installed key.
func (m *Membership) UseKey(k []byte) error { return m.keyring.UseKey(k) }

// RemoveKey removes a key that is not the one in use.
func (m *Membership) RemoveKey(k []byte) error { return m.keyring.RemoveKey(k) }

// HasKey reports whether the key is installed, and whether it is in use.
func (m *Membership) HasKey(k []byte) (installed, primary bool) {
	for _, x := range m.keyring.GetKeys() {
		if bytes.Equal(x, k) {
			installed = true
		}
	}
	return installed, bytes.Equal(m.keyring.GetPrimaryKey(), k)
}
