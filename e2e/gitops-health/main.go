// Command sluice-gitops-health evaluates a Kubernetes object the way GitOps tools do, so
// the e2e suite can check what Argo CD and Flux / Helm 4 would report for a Rollout:
//
//	sluice-gitops-health kstatus < object.json
//	sluice-gitops-health argocd SCRIPT.lua < object.json
//
// Each prints one JSON line {"status": ..., "message": ...}. `kstatus` is
// sigs.k8s.io/cli-utils' status.Compute, the library Flux's kustomize-controller and
// Helm 4 wait on. `argocd` runs a resource health script in gopher-lua (Lua 5.1) exactly
// as Argo CD's util/lua does: only the package, base and table libraries are open (Argo
// CD adds a reduced `os`, which the health script does not use), `obj` is the object
// converted value by value from the unstructured map, the run times out after 1 s and
// the returned table must carry a known health status.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sluice-gitops-health:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: sluice-gitops-health kstatus | argocd SCRIPT.lua (object JSON on stdin)")
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	// The same decoding the apiserver clients use: whole numbers become int64.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("decoding the object: %w", err)
	}
	var res result
	switch {
	case args[0] == "kstatus" && len(args) == 1:
		r, err := status.Compute(obj)
		if err != nil {
			return fmt.Errorf("kstatus: %w", err)
		}
		res = result{Status: r.Status.String(), Message: r.Message}
	case args[0] == "argocd" && len(args) == 2:
		script, err := os.ReadFile(args[1])
		if err != nil {
			return err
		}
		res, err = argocdHealth(obj, string(script))
		if err != nil {
			return fmt.Errorf("argocd health script: %w", err)
		}
	default:
		return fmt.Errorf("unknown arguments %q", args)
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

func argocdHealth(obj *unstructured.Unstructured, script string) (result, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return result{}, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj.Object))
	if err := l.DoString(script); err != nil {
		return result{}, err
	}
	ret := l.Get(-1)
	switch ret.Type() {
	case lua.LTNil:
		// Argo CD keeps its own assessment (none, for a custom resource).
		return result{}, nil
	case lua.LTTable:
	default:
		return result{}, fmt.Errorf("expect table output from Lua script, not %s", ret.Type())
	}
	t := ret.(*lua.LTable)
	res := result{Status: luaString(t.RawGetString("status")), Message: luaString(t.RawGetString("message"))}
	switch res.Status {
	case "Unknown", "Progressing", "Suspended", "Healthy", "Degraded", "Missing":
		return res, nil
	}
	return result{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
}

func luaString(v lua.LValue) string {
	if v == lua.LNil {
		return ""
	}
	return v.String()
}

// decodeValue is Argo CD's util/lua decodeValue: how `obj` reaches a health script.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case json.Number:
		return lua.LString(converted)
	case int:
		return lua.LNumber(converted)
	case int32:
		return lua.LNumber(converted)
	case int64:
		return lua.LNumber(converted)
	case []any:
		arr := l.CreateTable(len(converted), 0)
		for _, item := range converted {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(converted))
		for key, item := range converted {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}
