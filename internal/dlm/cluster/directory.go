package cluster

import (
	"slices"
	"strconv"
)

// View is a membership view of the lock manager: the members among which
// resources are mastered. The cluster agrees on it through the CDB (the
// director writes dlm-view {number, members}); this package only consumes
// it. Number grows with every view; Members are sorted and unique.
type View struct {
	Number  uint64
	Members []string
}

// Has reports whether m is a member of the view.
func (v View) Has(m string) bool {
	_, ok := slices.BinarySearch(v.Members, m)
	return ok
}

// MaxMembers bounds the members of a view.
const MaxMembers = 256

func (v View) check() error {
	switch {
	case v.Number == 0:
		return fail("view", LockID{}, errInvalid, "view number 0: views are numbered from 1")
	case len(v.Members) > MaxMembers:
		return fail("view", LockID{}, errInvalid, "view %d has %d members: at most %d", v.Number, len(v.Members), MaxMembers)
	}
	for i, m := range v.Members {
		if m == "" {
			return fail("view", LockID{}, errInvalid, "view %d has an empty member name", v.Number)
		}
		if i > 0 && v.Members[i-1] >= m {
			return fail("view", LockID{}, errInvalid, "view %d: members must be sorted and unique (%q then %q)", v.Number, v.Members[i-1], m)
		}
	}
	return nil
}

// String returns "N[a b c]".
func (v View) String() string {
	s := strconv.FormatUint(v.Number, 10) + "["
	for i, m := range v.Members {
		if i > 0 {
			s += " "
		}
		s += m
	}
	return s + "]"
}

// Master returns the member of v that masters the root resource root of
// lockspace ls: the member with the highest hash of (lockspace, root,
// member) (rendezvous hashing; ties go to the smaller name). A
// sub-resource lives with its root. It returns "" for a view with no
// members.
//
// The hash is FNV-1a 64 over the three length-prefixed strings, finished
// with the murmur3 64-bit mixer so that names differing in one byte spread
// over all members. It is fixed: every member, in every release, must
// compute the same master.
func Master(v View, ls, root string) string {
	base := fnvString(fnvString(fnvOffset, ls), root)
	best, bh := "", uint64(0)
	for _, m := range v.Members {
		h := mix64(fnvString(base, m))
		if best == "" || h > bh || (h == bh && m < best) {
			best, bh = m, h
		}
	}
	return best
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnvString adds len(s) (uvarint) and s to the FNV-1a 64 state h.
func fnvString(h uint64, s string) uint64 {
	n := uint64(len(s))
	for {
		b := byte(n & 0x7f)
		n >>= 7
		if n > 0 {
			b |= 0x80
		}
		h ^= uint64(b)
		h *= fnvPrime
		if n == 0 {
			break
		}
	}
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// mix64 is murmur3's fmix64 finalizer.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
