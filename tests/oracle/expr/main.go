// Differential oracle for gitops/conditions.py: reads JSON lines {"cond": ..., "result": ...}
// on stdin and writes one JSON line per input with what expr v1.17.8 says, the condition
// compiled and run the way Argo Rollouts' analysis controller does it (an environment holding
// `result` and its helper functions; the output must be a bool). Used only by
// tests/unit/test_conditions_oracle.py, which skips where Go or the module is unavailable.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"reflect"
	"strconv"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
)

type input struct {
	Cond   string          `json:"cond"`
	Result json.RawMessage `json:"result"`
}

type encoded struct {
	Kind   string   `json:"kind"`
	Values []string `json:"values"`
	Value  any      `json:"value"`
}

type output struct {
	Value *bool  `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
	Stage string `json:"stage,omitempty"`
}

func parseFloat(s string) float64 {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		panic(err)
	}
	return f
}

func decodeResult(raw json.RawMessage) any {
	var e encoded
	if err := json.Unmarshal(raw, &e); err != nil {
		panic(err)
	}
	switch e.Kind {
	case "vector":
		out := make([]float64, 0, len(e.Values))
		for _, v := range e.Values {
			out = append(out, parseFloat(v))
		}
		return out
	case "scalar":
		return parseFloat(e.Value.(string))
	case "bool":
		return e.Value.(bool)
	case "string":
		return e.Value.(string)
	case "int":
		return int(e.Value.(float64))
	case "nil":
		return nil
	}
	panic("unknown kind " + e.Kind)
}

func nilValue(v any) bool {
	if v == nil {
		return true
	}
	switch reflect.TypeOf(v).Kind() {
	case reflect.Ptr, reflect.Map, reflect.Array, reflect.Chan, reflect.Slice:
		return reflect.ValueOf(v).IsNil()
	}
	return false
}

func toInt(v any) int64 {
	switch x := v.(type) {
	case float64:
		return int64(x)
	case int64:
		return x
	case int:
		return int64(x)
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			panic(err)
		}
		return n
	}
	panic(fmt.Sprintf("asInt() not supported on %v %v", reflect.TypeOf(v), v))
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case int:
		return float64(x)
	case string:
		f, err := strconv.ParseFloat(x, 64)
		if err != nil {
			panic(err)
		}
		return f
	}
	panic(fmt.Sprintf("asFloat() not supported on %v %v", reflect.TypeOf(v), v))
}

func evaluate(cond string, result any) (out output) {
	env := map[string]any{
		"result":  result,
		"asInt":   toInt,
		"asFloat": toFloat,
		"isNaN":   math.IsNaN,
		"isInf":   func(f float64) bool { return math.IsInf(f, 0) },
		"isNil":   func(any) bool { return nilValue(result) },
		"default": func(_ any, fallback any) any {
			if nilValue(result) {
				return fallback
			}
			return result
		},
	}
	message := func(err error) string {
		if fe, ok := err.(*file.Error); ok {
			return fe.Message
		}
		return err.Error()
	}
	program, err := expr.Compile(cond, expr.Env(env))
	if err != nil {
		return output{Error: message(err), Stage: "compile"}
	}
	value, err := expr.Run(program, env)
	if err != nil {
		return output{Error: message(err), Stage: "run"}
	}
	b, ok := value.(bool)
	if !ok {
		return output{Error: fmt.Sprintf("expected bool, but got %T", value), Stage: "type"}
	}
	return output{Value: &b}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	for in.Scan() {
		var item input
		if err := json.Unmarshal(in.Bytes(), &item); err != nil {
			panic(err)
		}
		if err := enc.Encode(evaluate(item.Cond, decodeResult(item.Result))); err != nil {
			panic(err)
		}
	}
}
