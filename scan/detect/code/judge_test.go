package code

import "testing"

func TestJudge(t *testing.T) {
	for _, tc := range []struct {
		mod, name string
		want      int
	}{
		{"os", "system", Denied}, {"posix", "system", Denied}, {"nt", "system", Denied}, {"os.path", "join", Denied},
		{"subprocess", "Popen", Denied}, {"builtins", "eval", Denied}, {"__builtin__", "exec", Denied},
		{"builtins", "getattr", Denied}, {"builtins", "__import__", Denied}, {"builtins", "open", Denied},
		{"numpy", "__builtins__", Denied}, {"numpy.__builtins__", "exec", Denied}, {"builtins", "dict.get", Denied},
		{"runpy", "_run_code", Denied}, {"importlib", "import_module", Denied}, {"marshal", "loads", Denied},
		{"pip", "main", Denied}, {"pip._internal", "main", Denied}, {"webbrowser", "open", Denied},
		{"socket", "create_connection", Denied}, {"shutil", "rmtree", Denied}, {"torch.hub", "load", Denied},
		{"numpy.testing._private.utils", "runstring", Denied}, {"mylib", "system", Denied}, {"operator", "attrgetter", Denied},
		{"collections", "OrderedDict", Allowed}, {"torch._utils", "_rebuild_tensor_v2", Allowed}, {"torch", "FloatStorage", Allowed},
		{"torch.nn.modules.linear", "Linear", Allowed}, {"numpy.core.multiarray", "_reconstruct", Allowed},
		{"numpy", "dtype", Allowed}, {"_codecs", "encode", Allowed}, {"__builtin__", "set", Allowed},
		{"argparse", "Namespace", Allowed}, {"__torch__.Net", "forward", Allowed},
		{"netlib.nets", "TinyCNN", Unknown}, {"archs", "Net6", Unknown}, {"copyreg", "extension code 7", Unknown},
	} {
		if got, full := Judge(tc.mod, tc.name); got != tc.want {
			t.Errorf("Judge(%q, %q) = %d (%s), want %d", tc.mod, tc.name, got, full, tc.want)
		}
	}
}
