package code

import "strings"

// Verdicts of Judge.
const (
	Allowed = iota
	Unknown
	Denied
)

// The lists follow what real checkpoints need (torch.save of state_dicts and whole
// modules, numpy arrays and scalars, collections, argparse) and what the public scanners
// and advisories name as reaching code execution, the network or the file system
// (picklescan's and ModelScan's unsafe-globals lists, fickling's, CPython's pickle
// documentation, the CVE-2025-1716/1889/1944/1945/10155-10157 write-ups).

// denyRoots are modules denied with every sub-module and attribute.
var denyRoots = set(
	"os", "posix", "nt", "subprocess", "_posixsubprocess", "pty", "commands", "popen2",
	"runpy", "importlib", "imp", "zipimport", "pkgutil", "marshal", "pickle", "_pickle", "cPickle",
	"dill", "cloudpickle", "shelve", "pip", "setuptools", "distutils", "ensurepip", "venv",
	"webbrowser", "socket", "_socket", "ssl", "http", "urllib", "urllib2", "urllib3", "requests",
	"httplib", "ftplib", "smtplib", "telnetlib", "poplib", "imaplib", "nntplib", "xmlrpc",
	"socketserver", "asyncio", "multiprocessing", "concurrent", "threading", "_thread", "signal",
	"shutil", "fileinput", "ctypes", "_ctypes", "cffi", "code", "codeop", "pdb", "bdb", "trace",
	"timeit", "profile", "cProfile", "pydoc", "platform", "sys", "types", "operator", "_operator",
	"gc", "inspect", "site", "_osx_support", "_aix_support", "idlelib", "doctest", "tarfile",
	"zipfile", "io", "_io", "tempfile", "glob", "sqlite3", "builtins.eval", "ftplib", "telnetlib",
	"_winapi", "winreg", "msvcrt", "_winreg", "wsgiref", "cgi", "cgitb", "smtpd", "asynchat",
	"asyncore", "aiohttp", "httpx", "paramiko", "fabric", "sh", "plumbum", "pexpect",
)

// denyPaths are module paths (module.attribute prefixes) denied in otherwise allowed or
// unknown packages.
var denyPaths = []string{
	"codecs.open", "uuid._get_command_stdout", "torch.hub", "torch.load", "torch.serialization.load",
	"torch.jit.load", "torch.utils.cpp_extension", "torch._inductor", "torch.package",
	"torch.classes.load_library", "torch.ops.load_library", "torch._dynamo", "torch.utils.data.datapipes",
	"numpy.load", "numpy.lib.npyio", "numpy.testing", "numpy.f2py", "numpy.distutils", "numpy.ctypeslib",
	"joblib.load", "joblib._store_backends", "pandas.read_pickle", "pandas.io", "keras.models.load_model",
	"tensorflow.io", "tensorflow.keras.models.load_model", "functools.partial", "functools.reduce",
	"pathlib.Path.write", "pathlib.PosixPath.write", "logging.config",
}

// denyBuiltins are builtins that run code, reach attributes dynamically or touch files.
var denyBuiltins = set(
	"eval", "exec", "execfile", "compile", "getattr", "setattr", "delattr", "__import__", "open",
	"input", "breakpoint", "globals", "locals", "vars", "dir", "help", "exit", "quit", "reload",
	"file", "memoryview", "classmethod", "staticmethod", "property", "super", "type", "apply",
	"__build_class__", "__loader__", "__spec__", "raw_input",
)

// denyNames are attribute names that run code or walk to it wherever they appear.
var denyNames = set(
	"system", "popen", "exec", "eval", "execfile", "__import__", "getoutput", "getstatusoutput",
	"check_output", "check_call", "Popen", "spawnl", "spawnv", "spawnve", "spawnlp", "spawnvp",
	"execv", "execve", "execl", "execlp", "execvp", "execvpe", "startfile", "load_module",
	"import_module", "__globals__", "__subclasses__", "__code__", "__builtins__", "__getattribute__",
	"__reduce__", "__reduce_ex__", "__class__", "__bases__", "__mro__", "__base__", "__dict__",
	"__closure__", "__func__", "__self__", "__loader__", "__spec__", "__init_subclass__", "f_globals",
	"gi_frame", "_run_code", "run_path", "run_module",
)

// allowExact are globals benign checkpoints need.
var allowExact = set(
	"collections.OrderedDict", "collections.defaultdict", "collections.deque", "collections.Counter",
	"torch._tensor._rebuild_from_type_v2", "torch._tensor._rebuild_from_type", "torch.Size",
	"torch.device", "torch.storage.UntypedStorage", "torch.storage.TypedStorage", "torch.storage._load_from_bytes",
	"torch.nn.parameter.Parameter", "torch.nn.parameter.Buffer", "torch.nn.parameter.UninitializedParameter",
	"torch.serialization._get_layout", "torch.strided", "torch.sparse_coo", "torch.contiguous_format",
	"torch.channels_last", "torch.preserve_format", "torch.per_tensor_affine", "torch.per_channel_affine",
	"torch._C._nn.gelu", "torch.float32", "torch.float16", "torch.bfloat16", "torch.float64", "torch.int64",
	"torch.int32", "torch.int16", "torch.int8", "torch.uint8", "torch.bool", "torch.complex64",
	"torch.float", "torch.half", "torch.double", "torch.long", "torch.int",
	"numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct",
	"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.ndarray", "numpy.dtype",
	"numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer", "numpy.ma.core._mareconstruct",
	"numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
	"numpy.random._pickle.__generator_ctor",
	"_codecs.encode", "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.slice",
	"builtins.complex", "builtins.range", "builtins.int", "builtins.float", "builtins.str",
	"builtins.bytes", "builtins.list", "builtins.dict", "builtins.tuple", "builtins.bool", "builtins.object",
	"copyreg._reconstructor", "copyreg.__newobj__", "copyreg.__newobj_ex__", "copy_reg._reconstructor",
	"argparse.Namespace", "joblib.numpy_pickle.NumpyArrayWrapper", "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
	"datetime.datetime", "datetime.date", "datetime.timedelta", "datetime.timezone", "datetime.time",
	"decimal.Decimal", "fractions.Fraction", "uuid.UUID", "enum.Enum", "re._compile",
)

// allowPrefixes are module paths whose every attribute is allowed.
var allowPrefixes = []string{
	"torch._utils._rebuild_", "torch.nn.modules.", "torch.jit._pickle.", "__torch__.", "torch.ao.nn.",
	"torch.nn.intrinsic.", "torch.nn.quantized.", "numpy.dtypes.",
}

func set(xs ...string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

// Normalize returns the dotted path a global names, with Python 2 and dunder aliases of
// builtins resolved: "__builtin__.set" is "builtins.set", "numpy.__builtins__.exec" is
// "builtins.exec".
func Normalize(module, name string) string {
	full := name
	if module != "" {
		full = module + "." + name
	}
	parts := strings.Split(full, ".")
	for i := len(parts) - 1; i >= 0; i-- {
		switch parts[i] {
		case "__builtin__", "__builtins__", "builtins":
			return strings.Join(append([]string{"builtins"}, parts[i+1:]...), ".")
		}
	}
	return full
}

// Judge classifies the global module.name: Denied when importing or calling it can run code
// or reach the system, Allowed when benign checkpoints need it, Unknown otherwise. It returns
// the normalised path too.
func Judge(module, name string) (int, string) {
	for _, p := range strings.Split(module+"."+name, ".")[1:] {
		if denyNames[p] {
			return Denied, Normalize(module, name)
		}
	}
	full := Normalize(module, name)
	parts := strings.Split(full, ".")
	if parts[0] == "builtins" && len(parts) > 1 {
		if denyBuiltins[parts[1]] || (len(parts) > 2 && !allowExact[full]) {
			// a builtin that runs code, or an attribute of a builtin type (dict.get,
			// object.__getattribute__): both reach arbitrary attributes
			return Denied, full
		}
	}
	if denyRoots[parts[0]] {
		return Denied, full
	}
	for _, p := range denyPaths {
		if full == p || strings.HasPrefix(full, p+".") || (strings.HasSuffix(p, "write") && strings.HasPrefix(full, p)) {
			return Denied, full
		}
	}
	for _, p := range parts[1:] {
		if denyNames[p] {
			return Denied, full
		}
	}
	if allowExact[full] {
		return Allowed, full
	}
	if parts[0] == "torch" && len(parts) == 2 && strings.HasSuffix(parts[1], "Storage") {
		return Allowed, full
	}
	for _, p := range allowPrefixes {
		if strings.HasPrefix(full, p) {
			return Allowed, full
		}
	}
	return Unknown, full
}
