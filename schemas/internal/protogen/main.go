// Command protogen generates the Go code for schemas/*.proto into pkg/events without protoc:
// it compiles the .proto files with github.com/bufbuild/protocompile and runs the same code
// generator protoc-gen-go uses, so `make generate` needs nothing but Go.
//
//	go run ./schemas/internal/protogen -proto schemas -out pkg/events            # write
//	go run ./schemas/internal/protogen -proto schemas -out pkg/events -check     # fail if stale
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/bufbuild/protocompile"
	gengo "google.golang.org/protobuf/cmd/protoc-gen-go/internal_gengo"
	"google.golang.org/protobuf/compiler/protogen"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/pluginpb"
)

func main() {
	if err := realMain(); err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
}

func realMain() error {
	protoDir := flag.String("proto", "schemas", "directory holding the .proto files")
	outDir := flag.String("out", "pkg/events", "directory the Go files are written to")
	check := flag.Bool("check", false, "do not write; fail when the files on disk differ")
	flag.Parse()

	names, err := filepath.Glob(filepath.Join(*protoDir, "*.proto"))
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("no .proto files in %s", *protoDir)
	}
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	sort.Strings(names)

	generated, err := generate(*protoDir, names)
	if err != nil {
		return err
	}
	var stale []string
	for name, content := range generated {
		path := filepath.Join(*outDir, name)
		if *check {
			old, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(old, content) {
				stale = append(stale, path)
			}
			continue
		}
		if err := os.WriteFile(path, content, 0o644); err != nil {
			return err
		}
	}
	if len(stale) > 0 {
		sort.Strings(stale)
		return fmt.Errorf("generated code is stale, run `make generate`: %s", strings.Join(stale, ", "))
	}
	return nil
}

// generate compiles the named files and returns the generated Go files by base name.
func generate(protoDir string, names []string) (map[string][]byte, error) {
	compiler := protocompile.Compiler{
		Resolver:       protocompile.WithStandardImports(&protocompile.SourceResolver{ImportPaths: []string{protoDir}}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	files, err := compiler.Compile(context.Background(), names...)
	if err != nil {
		return nil, fmt.Errorf("compile: %w", err)
	}
	req := &pluginpb.CodeGeneratorRequest{FileToGenerate: names}
	seen := map[string]bool{}
	for _, f := range files {
		// Dependencies first, as protoc orders them.
		imports := f.Imports()
		for i := 0; i < imports.Len(); i++ {
			dep := imports.Get(i).FileDescriptor
			if !seen[dep.Path()] {
				seen[dep.Path()] = true
				req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(dep))
			}
		}
		if !seen[f.Path()] {
			seen[f.Path()] = true
			req.ProtoFile = append(req.ProtoFile, protodesc.ToFileDescriptorProto(f))
		}
	}
	plugin, err := protogen.Options{}.New(req)
	if err != nil {
		return nil, fmt.Errorf("code generator: %w", err)
	}
	plugin.SupportedFeatures = gengo.SupportedFeatures
	for _, f := range plugin.Files {
		if f.Generate {
			gengo.GenerateFile(plugin, f)
		}
	}
	resp := plugin.Response()
	if resp.Error != nil {
		return nil, errors.New(resp.GetError())
	}
	out := map[string][]byte{}
	for _, f := range resp.File {
		out[filepath.Base(f.GetName())] = []byte(f.GetContent())
	}
	return out, nil
}
