package pkgdoc_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs checks that every package directory under internal/ and
// client/ has a package doc comment, starting "Package NAME", in one of its
// non-test files.
func TestPackageDocs(t *testing.T) {
	root := filepath.Join("..", "..")
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found at %s: %v", root, err)
	}
	checked := 0
	for _, top := range []string{"internal", "client"} {
		err := filepath.WalkDir(filepath.Join(root, top), func(dir string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() {
				return nil
			}
			if n := d.Name(); n == "testdata" || strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") {
				return filepath.SkipDir
			}
			name, docs, files, err := packageDoc(dir)
			if err != nil {
				return err
			}
			if files == 0 {
				return nil // no package here
			}
			checked++
			rel, _ := filepath.Rel(root, dir)
			switch {
			case len(docs) == 0:
				t.Errorf("package %s (%s) has no package doc comment: add one, in the form %q, saying what the package owns and what it must not do", name, rel, "// Package "+name+" ...")
			case !strings.HasPrefix(docs[0], "Package "+name+" "):
				t.Errorf("package %s (%s): doc comment should start %q, starts %q", name, rel, "Package "+name+" ", firstLine(docs[0]))
			default:
				t.Logf("%s: %s", rel, firstLine(docs[0]))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if checked < 5 {
		t.Fatalf("only %d packages found: is the walk looking in the right place?", checked)
	}
}

// packageDoc parses the package clauses of the non-test Go files in dir and
// returns the package name, the doc comments found, and the number of files.
func packageDoc(dir string) (name string, docs []string, files int, err error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", nil, 0, err
	}
	fset := token.NewFileSet()
	for _, e := range ents {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return "", nil, 0, err
		}
		files++
		name = f.Name.Name
		if f.Doc != nil {
			docs = append(docs, f.Doc.Text())
		}
	}
	return name, docs, files, nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
