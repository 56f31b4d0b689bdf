// Package e2e holds the multi-process tests: real `vigil agent` processes on
// 127.0.0.1 ports, formed and driven through the real CLI. It owns no
// production code.
package e2e
