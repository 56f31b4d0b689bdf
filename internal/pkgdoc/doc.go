// Package pkgdoc holds only a test: every package under internal/ and client/
// must have a package doc comment that says what it owns and what it must not
// do (see STYLE.md). It has no code and nothing may import it.
package pkgdoc
