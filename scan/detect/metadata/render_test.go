package metadata

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The expected strings below are what transformers' apply_chat_template produces (Jinja2
// with trim_blocks and lstrip_blocks); they were written from the templates' semantics and
// cross-checked against Jinja2 3.1.6 configured as transformers configures it.

var (
	convSystem = []ChatMessage{
		{"system", "You are a helpful assistant."},
		{"user", "Hello!"},
		{"assistant", " Hi! How can I help? "},
		{"user", "What is 2+2?\n"},
	}
	convNoSystem = convSystem[1:]
)

func readTestTemplate(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "templates", "clean", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// zephyrInline is the one-line zephyr / TinyLlama template.
const zephyrInline = `{% for message in messages %}{% if message['role'] == 'user' %}{{ '<|user|>\n' + message['content'] + eos_token + '\n' }}{% elif message['role'] == 'system' %}{{ '<|system|>\n' + message['content'] + eos_token + '\n' }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\n' + message['content'] + eos_token + '\n' }}{% endif %}{% if loop.last and add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}{% endfor %}`

// llama3Inline is Meta-Llama-3-8B-Instruct's template.
const llama3Inline = `{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}`

// gemma3Style is google/gemma-3's template (system text prepended to the first user turn).
const gemma3Style = `{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
`

func TestRenderRealTemplates(t *testing.T) {
	tests := []struct {
		name     string
		template string
		msgs     []ChatMessage
		bos, eos string
		body     string // rendered without the generation prompt
		prompt   string // what add_generation_prompt appends
	}{
		{
			name: "llama-2", template: readTestTemplate(t, "ollama-llama2-7b.jinja"), msgs: convSystem, bos: "<s>", eos: "</s>",
			body: "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nHello! [/INST] Hi! How can I help? </s><s>[INST] What is 2+2? [/INST]",
		},
		{
			name: "llama-2 without system", template: readTestTemplate(t, "ollama-llama2-7b.jinja"), msgs: convNoSystem, bos: "<s>", eos: "</s>",
			body: "<s>[INST] Hello! [/INST] Hi! How can I help? </s><s>[INST] What is 2+2? [/INST]",
		},
		{
			name: "llama-3", template: llama3Inline, msgs: convSystem, bos: "<|begin_of_text|>", eos: "<|eot_id|>",
			body: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant.<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I help?<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
			prompt: "<|start_header_id|>assistant<|end_header_id|>\n\n",
		},
		{
			name: "llama-3.1", template: readTestTemplate(t, "ollama-llama3.1-8b.jinja"), msgs: convSystem, bos: "<|begin_of_text|>", eos: "<|eot_id|>",
			body: "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are a helpful assistant.<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nHello!<|eot_id|>" +
				"<|start_header_id|>assistant<|end_header_id|>\n\nHi! How can I help?<|eot_id|>" +
				"<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>",
			prompt: "<|start_header_id|>assistant<|end_header_id|>\n\n",
		},
		{
			name: "qwen2.5", template: readTestTemplate(t, "ollama-qwen2.5-0.5b.jinja"), msgs: convSystem, bos: "", eos: "<|im_end|>",
			body: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
				"<|im_start|>user\nHello!<|im_end|>\n" +
				"<|im_start|>assistant\n Hi! How can I help? <|im_end|>\n" +
				"<|im_start|>user\nWhat is 2+2?\n<|im_end|>\n",
			prompt: "<|im_start|>assistant\n",
		},
		{
			name: "qwen2.5 default system prompt", template: readTestTemplate(t, "ollama-qwen2.5-0.5b.jinja"), msgs: convNoSystem, bos: "", eos: "<|im_end|>",
			body: "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n" +
				"<|im_start|>user\nHello!<|im_end|>\n" +
				"<|im_start|>assistant\n Hi! How can I help? <|im_end|>\n" +
				"<|im_start|>user\nWhat is 2+2?\n<|im_end|>\n",
			prompt: "<|im_start|>assistant\n",
		},
		{
			name: "chatml qwen2", template: readTestTemplate(t, "ollama-qwen2-0.5b.jinja"), msgs: convNoSystem, bos: "", eos: "<|im_end|>",
			body: "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n" +
				"<|im_start|>user\nHello!<|im_end|>\n" +
				"<|im_start|>assistant\n Hi! How can I help? <|im_end|>\n" +
				"<|im_start|>user\nWhat is 2+2?\n<|im_end|>\n",
			prompt: "<|im_start|>assistant\n",
		},
		{
			name: "zephyr inline", template: zephyrInline, msgs: convSystem, bos: "<s>", eos: "</s>",
			body:   "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHello!</s>\n<|assistant|>\n Hi! How can I help? </s>\n<|user|>\nWhat is 2+2?\n</s>\n",
			prompt: "<|assistant|>\n",
		},
		{
			name: "zephyr multi-line", template: readTestTemplate(t, "zephyr.jinja"), msgs: convSystem, bos: "<s>", eos: "</s>",
			body:   "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHello!</s>\n<|assistant|>\n Hi! How can I help? </s>\n<|user|>\nWhat is 2+2?\n</s>\n",
			prompt: "<|assistant|>\n",
		},
		{
			name: "tinyllama", template: readTestTemplate(t, "ollama-tinyllama-1.1b.jinja"), msgs: convSystem, bos: "<s>", eos: "</s>",
			body:   "<|system|>\nYou are a helpful assistant.</s>\n<|user|>\nHello!</s>\n<|assistant|>\n Hi! How can I help? </s>\n<|user|>\nWhat is 2+2?\n</s>\n",
			prompt: "<|assistant|>\n",
		},
		{
			name: "mistral-instruct", template: readTestTemplate(t, "ollama-mistral-7b-instruct-fp16.jinja"), msgs: convNoSystem, bos: "<s>", eos: "</s>",
			body: "<s>[INST] Hello! [/INST] Hi! How can I help? </s> [INST] What is 2+2?\n [/INST]",
		},
		{
			name: "gemma-2", template: readTestTemplate(t, "ollama-gemma2-2b.jinja"), msgs: convNoSystem, bos: "<bos>", eos: "<eos>",
			body: "<bos><start_of_turn>user\nHello!<end_of_turn>\n" +
				"<start_of_turn>model\nHi! How can I help?<end_of_turn>\n" +
				"<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n",
			prompt: "<start_of_turn>model\n",
		},
		{
			name: "gemma-3", template: gemma3Style, msgs: convSystem, bos: "<bos>", eos: "<eos>",
			body: "<bos><start_of_turn>user\nYou are a helpful assistant.\n\nHello!<end_of_turn>\n" +
				"<start_of_turn>model\nHi! How can I help?<end_of_turn>\n" +
				"<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n",
			prompt: "<start_of_turn>model\n",
		},
		{
			name: "phi-3", template: readTestTemplate(t, "ollama-phi3-3.8b.jinja"), msgs: convSystem, bos: "<s>", eos: "<|endoftext|>",
			body: "<|system|>\nYou are a helpful assistant.<|end|>\n<|user|>\nHello!<|end|>\n<|assistant|>\n Hi! How can I help? <|end|>\n<|user|>\nWhat is 2+2?\n<|end|>\n",
			// phi-3 ends with eos_token when no generation prompt is asked for
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, agp := range []bool{false, true} {
				want := tt.body
				if agp {
					want += tt.prompt
				}
				if tt.name == "phi-3" {
					if agp {
						want += "<|assistant|>\n"
					} else {
						want += "<|endoftext|>"
					}
				}
				got, err := RenderChat(tt.template, tt.msgs, agp, tt.bos, tt.eos)
				if err != nil {
					t.Fatalf("add_generation_prompt=%v: %v", agp, err)
				}
				if got != want {
					t.Errorf("add_generation_prompt=%v:\n got %q\nwant %q", agp, got, want)
				}
			}
		})
	}
}

// Templates that reject a conversation do it with raise_exception.
func TestRenderRaiseException(t *testing.T) {
	tests := []struct {
		name, template string
		msgs           []ChatMessage
		msg            string
	}{
		{"llama-2 alternation", readTestTemplate(t, "ollama-llama2-7b.jinja"), []ChatMessage{{"user", "a"}, {"user", "b"}}, "Conversation roles must alternate"},
		{"mistral system role", readTestTemplate(t, "ollama-mistral-7b-instruct-fp16.jinja"), convSystem, "Conversation roles must alternate"},
		{"mistral alternation", readTestTemplate(t, "ollama-mistral-7b-instruct-fp16.jinja"), []ChatMessage{{"assistant", "a"}}, "Conversation roles must alternate"},
		{"gemma system role", readTestTemplate(t, "ollama-gemma2-2b.jinja"), convSystem, "System role not supported"},
		{"gemma-3 alternation", gemma3Style, []ChatMessage{{"system", "s"}, {"assistant", "a"}}, "Conversation roles must alternate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := RenderChat(tt.template, tt.msgs, true, "<s>", "</s>")
			var re *RenderError
			if !errors.As(err, &re) {
				t.Fatalf("RenderChat = %q, %v; want a *RenderError", out, err)
			}
			if !re.Raised || !strings.Contains(re.Msg, tt.msg) {
				t.Errorf("error %+v, want raised %q", re, tt.msg)
			}
			if re.Offset < 0 || re.Offset >= len(tt.template) || !strings.HasPrefix(tt.template[re.Offset:], "raise_exception") {
				t.Errorf("offset %d does not point at raise_exception", re.Offset)
			}
		})
	}
}

// Every real template of the test corpus renders a plain conversation (or rejects it with
// one of the errors transformers gives too).
func TestRenderCorpus(t *testing.T) {
	wantErr := map[string]string{
		"ollama-gemma2-2b.jinja":                                  "System role not supported",
		"ollama-mistral-7b-instruct-fp16.jinja":                   "Conversation roles must alternate",
		"ollama-llava-7b.jinja":                                   "Conversation roles must alternate",
		"ollama-llama-guard3-1b.jinja":                            "Conversation roles must alternate",
		"ollama-llama-guard3-8b.jinja":                            "Conversation roles must alternate",
		"ollama-gemma3-1b.jinja":                                  "has no attribute 'text'", // wants a list of content parts
		"ollama-firefunction-v2-70b.jinja":                        "'functions' is undefined",
		"llamacpp-CohereForAI-c4ai-command-r-plus-tool_use.jinja": "NoneType object is not iterable", // needs tools
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "templates", "clean", "*.jinja"))
	if len(files) < 50 {
		t.Fatalf("only %d templates", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(f)
		out, err := RenderChat(string(b), convSystem, true, "<s>", "</s>")
		if want, ok := wantErr[name]; ok {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s: err = %v, want %q", name, err, want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if last := strings.TrimSpace(convSystem[3].Content); !strings.Contains(out, last) {
			t.Errorf("%s: output lacks the last user message %q: %q", name, last, out)
		}
	}
}

// Semantics of the evaluator, conversation = semMsgs, add_generation_prompt true.
func TestRenderSemantics(t *testing.T) {
	semMsgs := []ChatMessage{{"system", "You are helpful."}, {"user", "Hi!"}, {"assistant", "Hello."}, {"user", "How are you?"}}
	tests := []struct{ name, template, want string }{
		{"arith1", "{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 'ab' * 3 }} {{ [1] * 3 }} {{ 3 * 'x' }} {{ 'a' ~ 1 ~ none ~ true }} {{ 1 + true }} {{ -3 }} {{ +4 }}", "3 -4 1 2 -2 1024 0.5 3.0 0.5 ababab [1, 1, 1] xxx a1NoneTrue 2 -3 4"},
		{"attr1", "{% set m = messages[0] %}{{ m.role == m['role'] }} {{ m.get('role') }} {{ m.get('nope', 'd') }} {{ m.get('nope') }} {{ m.keys() | list }} {{ m.values() | list }} {{ m.items() | list }} [{{ m.nope }}] {{ m.nope is defined }} {{ m.nope is none }} {{ 'role' in m }}", "True system d None ['role', 'content'] ['system', 'You are helpful.'] [('role', 'system'), ('content', 'You are helpful.')] [] False False True"},
		{"bool1", "{{ 0 or 'x' }} {{ '' and 'y' }} {{ 'a' and 'b' }} {{ not [] }} {{ none or [] }} {{ 'v' if false }} [{{ 'v' if false else 'w' }}] {{ undefined_thing or 'dflt' }}", "x  b True []  [w] dflt"},
		{"cmp1", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 'a' in 'abc' }} {{ 'z' not in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 1 == 1.0 }} {{ [1, 2] == [1, 2] }} {{ (1,) == [1] }} {{ 'a' < 'b' }} {{ [1, 2] < [1, 3] }} {{ none == none }} {{ x == y }} {{ x is defined }} {{ none is none }}", "True False True True True True True True False True True True True False True"},
		{"e_bool_print", "{{ true }} {{ false }} {{ none }} {{ True }} {{ [true, none] }}", "True False None True [True, None]"},
		{"e_cmt", "a\n   {# comment #}\nb\n  {#- c -#}  \n  c {#+ x #}\n", "a\nbc "},
		{"e_content_parts", "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% else %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endif %}{% endfor %}", "You are helpful.Hi!Hello.How are you?"},
		{"e_default_none", "{{ none | default('x') }} {{ false | default('y', true) }} {{ [] | default('z', boolean=true) }}", "None y z"},
		{"e_dict_literal_keys", "{% set d = {'a': 1, 'b': 2} %}{% for k in d %}{{ k }}{% endfor %}{{ d | length }}{{ d.a }}{{ d['b'] }}{{ d.items() | list | length }}", "ab2122"},
		{"e_getitem_method", "{{ messages[0]['get']('role') }} {{ 'abc'['upper']() }}", "system ABC"},
		{"e_if_expr_none", "{{ (none if true) is none }} {{ ('a' if false) is defined }}", "True False"},
		{"e_is_seq", "{{ messages is sequence }} {{ messages[0] is mapping }} {{ messages is iterable }} {{ 1 is iterable }} {{ none is string }} {{ foo is string }} {{ foo is iterable }}", "True True True False False False True"},
		{"e_join_attr", "{{ messages | join(' | ', attribute='role') }} {{ messages | map(attribute='content') | map('length') | list }} {{ messages | map(attribute='role') | unique | list }}", "system | user | assistant | user [16, 3, 6, 12] ['system', 'user', 'assistant']"},
		{"e_long_concat", "{% set ns = namespace(s='') %}{% for i in range(100) %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.s | length }}", "190"},
		{"e_loop_filter_len", "{% for m in messages if m.role == 'user' %}{{ loop.length }}{{ loop.last }}{% endfor %}", "2False2True"},
		{"e_macro_scope", "{% set g = 'global' %}{% macro m() %}{{ g }}{% set g = 'local' %}{{ g }}{% endmacro %}{{ m() }}{{ g }}", "globallocalglobal"},
		{"e_multi_tag_line", "    {% if true %}{% if true %}x{% endif %}{% endif %}\n    {{ 'y' }}\n    {% for i in [1] %}\n    i={{ i }}\n    {% endfor %}\nend", "x    y\n    i=1\nend"},
		{"e_nested_loop", "{% for a in [1, 2] %}{% for b in 'xy' %}{{ loop.index }}{{ a }}{{ b }}{% endfor %}{{ loop.index }};{% endfor %}", "11x21y1;12x22y2;"},
		{"e_none_attr", "[{{ none.foo }}]", "[]"},
		{"e_plus1", "a\n  {%+ if true %}b{% endif %}\n{% if true +%}\nc{% endif %}\n", "a\n  b\nc"},
		{"e_plus2", "{% for i in range(2) +%}\n{{ i }}{% endfor %}", "\n0\n1"},
		{"e_pyfloat", "{{ 1e-5 }} {{ 123456789012345678.0 }} {{ 1.23e+100 }} {{ 5e-324 }} {{ 0.5 }} {{ 2.0**0.5 }}", "1e-05 1.2345678901234568e+17 1.23e+100 5e-324 0.5 1.4142135623730951"},
		{"e_set_loop_var", "{% for m in messages %}{% set last_role = m.role %}{% endfor %}[{{ last_role }}]", "[]"},
		{"e_slice_step", "{{ 'abcdef'[1:5:2] }} {{ 'abcdef'[5:1:-1] }} {{ 'abcdef'[-1:-4:-1] }} {{ 'abcdef'[:-7:-1] }} {{ [0,1,2,3][::3] }}", "bd fedc fed fedcba [0, 3]"},
		{"e_split_index", "{% set c = messages[-1].content %}{{ c.split(' ')[0] }}|{{ c.split()[-1] }}|{{ (c.split('</think>') | last).lstrip('\\n') }}", "How|you?|How are you?"},
		{"e_string_escape", "{{ 'a\\tb\\u00e9\\x41\\101' }} {{ \"q\\\"q\" }} {{ 'line1\nline2' }}", "a\tbéAA q\"q line1\nline2"},
		{"e_title", "{{ 'hello_world foo-bar o\\'neil 3rd' | title }} {{ 'hello_world foo-bar 3rd'.title() }} {{ 'ǆemal' | capitalize }}", "Hello_world Foo-Bar O'neil 3rd Hello_World Foo-Bar 3Rd ǅemal"},
		{"e_tojson_misc", "{{ [1.5, 1e20, -0.0, 2**62] | tojson }} {{ {1: 'a', true: 'b', none: 'c', 2.5: 'd'} | tojson }}", "[1.5, 1e+20, -0.0, 4611686018427387904] {\"1\": \"b\", \"null\": \"c\", \"2.5\": \"d\"}"},
		{"e_tojson_msgs", "{{ messages | tojson(indent=4) }}{{ {'a': {'b': [1, 2]}, 'c': []} | tojson(indent=2) }}", "[\n    {\n        \"role\": \"system\",\n        \"content\": \"You are helpful.\"\n    },\n    {\n        \"role\": \"user\",\n        \"content\": \"Hi!\"\n    },\n    {\n        \"role\": \"assistant\",\n        \"content\": \"Hello.\"\n    },\n    {\n        \"role\": \"user\",\n        \"content\": \"How are you?\"\n    }\n]{\n  \"a\": {\n    \"b\": [\n      1,\n      2\n    ]\n  },\n  \"c\": []\n}"},
		{"e_whitespace_inline", "<|im_start|>{{ 'x' }}  \n  {%- if true %}  y  {% endif -%}\n\n  z", "<|im_start|>x  y  z"},
		{"filt1", "[{{ '  x  ' | trim }}] {{ 'abc' | length }} {{ [1,2] | count }} {{ 'ab' | upper }} {{ 'AB' | lower }} {{ 'hello WORLD' | capitalize }} {{ 'hello-world foo(bar) they\\'re' | title }} {{ 'aXa' | replace('a', 'b') }} {{ ['a', 'b'] | join(', ') }} {{ [1, 2] | join }} {{ [1, 2, 3] | first }} {{ [1, 2, 3] | last }} {{ 'abc' | first }} {{ 'abc' | last }} {{ x | default('d') }} {{ '' | default('e', true) }} {{ '' | d('f') }} {{ none | default('g') }}", "[x] 3 2 AB ab Hello world Hello-World Foo(Bar) They're bXb a, b 12 1 3 a c d e  None"},
		{"filt2", "{{ {'a': [1, 2.5, none, true, 'ü\"\\n'], 'b': {}} | tojson }} {{ [1, {'x': []}] | tojson(indent=2) }} {{ {'b': 1, 'a': 2} | tojson(sort_keys=true) }} {{ {'a': 1} | tojson(separators=(',', ':')) }} {{ 'x' | tojson }} {{ 3 | string }} {{ [1] | string }} {{ '42' | int }} {{ '4.7' | int }} {{ 'x' | int }} {{ 'x' | int(7) }} {{ 3.9 | int }} {{ '2.5' | float }} {{ 'abc' | list }} {{ {'a': 1} | list }} {{ {'a': 1} | items | list }}", "{\"a\": [1, 2.5, null, true, \"ü\\\"\\n\"], \"b\": {}} [\n  1,\n  {\n    \"x\": []\n  }\n] {\"a\": 2, \"b\": 1} {\"a\":1} \"x\" 3 [1] 42 4 0 7 3 2.5 ['a', 'b', 'c'] ['a'] [('a', 1)]"},
		{"filt3", "{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | list }} {{ messages | rejectattr('role', '==', 'user') | map(attribute='role') | join(',') }} {{ messages | selectattr('role', 'in', ['system', 'assistant']) | list | length }} {{ messages | map(attribute='nope', default='z') | list }} {{ ['a', 'B'] | map('upper') | list }} {{ [1, 0, 2, none] | select | list }} {{ [1, 2, 3, 4] | select('odd') | list }} {{ [1, 2, 3, 4] | reject('even') | list }} {{ messages | selectattr('content') | list | length }} {{ [{'a': {'b': 1}}, {'a': {'b': 2}}] | map(attribute='a.b') | list }}", "['Hi!', 'How are you?'] system,assistant 2 ['z', 'z', 'z', 'z'] ['A', 'B'] [1, 2] [1, 3] [1, 3] 4 [1, 2]"},
		{"filt4", "{{ [3, 1, 2] | sort }} {{ ['b', 'A', 'c'] | sort }} {{ ['b', 'A', 'c'] | sort(case_sensitive=true) }} {{ [3, 1, 2] | sort(reverse=true) }} {{ messages | sort(attribute='role') | map(attribute='role') | list }} {{ [1, 2, 1, 3] | unique | list }} {{ ['a', 'A', 'b'] | unique | list }} {{ [1, 2] | reverse | list }} {{ 'abc' | reverse }} {{ [1, 2, 3] | sum }} {{ [1, 5, 3] | max }} {{ [4, 2] | min }} {{ -3 | abs }} {{ 2.567 | round(2) }} {{ 2.5 | round }} {{ 3.5 | round }} {{ 2.1 | round(0, 'ceil') }}", "[1, 2, 3] ['A', 'b', 'c'] ['A', 'b', 'c'] [3, 2, 1] ['assistant', 'system', 'user', 'user'] [1, 2, 3] ['a', 'b'] [2, 1] cba 6 5 2 3 2.57 2.0 4.0 3.0"},
		{"filt5", "{{ 'a\\nb\\n\\nc' | indent }}|{{ 'a\\nb' | indent(2, true) }}|{{ 'a\\n\\nb' | indent(width='> ', blank=true) }}|{{ 'x' | center(7) }}|{{ 'one two, three' | wordcount }} {{ '<a href=\"x\">&' | e }} {{ {'b': 2, 'a': 1} | dictsort }} {{ [1, 2, 3, 4, 5] | batch(2) | list }} {{ [1, 2, 3] | batch(2, 0) | list }} {{ '%s-%d' | format('a', 3) }} {{ 'hello world foo bar' | truncate(9) }} {{ 'hello world foo bar' | truncate(9, true) }} {{ messages[0] | attr('role') }} {{ 'abc' | safe }} {{ '%s=%s' % ('a', 'b') }}", "a\n    b\n\n    c|  a\n  b|a\n> \n> b|   x   |3 &lt;a href=&#34;x&#34;&gt;&amp; [('a', 1), ('b', 2)] [[1, 2], [3, 4], [5]] [[1, 2], [3, 0]] a-3 hello... hello ...  abc a=b"},
		{"gen1", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}{% endfor %}", "You are helpful.Hi!Hello.How are you?"},
		{"idx1", "{% set s = 'héllo' %}{{ s[1] }} {{ s[-1] }} {{ s[1:3] }} {{ s[::-1] }} {{ s[::2] }} {{ s[-2:] }} {{ s[:-2] }} {{ s[10:] }} [{{ s[10] }}] {{ messages[-1].content }} {{ messages[1:][0].role }} {{ messages[::-1][0].role }} {{ [1,2,3,4,5][4:1:-2] }} {{ [1,2,3][-10:10] }}", "é o él olléh hlo lo hél  [] How are you? user user [5, 3] [1, 2, 3]"},
		{"lit1", "{{ [1, 2.5, 'a', true, none, (1,), (), {'k': [1, {'n': none}]}] }}|{{ (1, 'x') }}|{{ {'a': \"it's\"} }}|{{ 1e20 }} {{ 1.5e-7 }} {{ 100.0 }} {{ 0.1 + 0.2 }} {{ 1/3 }} {{ 10/2 }}", "[1, 2.5, 'a', True, None, (1,), (), {'k': [1, {'n': None}]}]|(1, 'x')|{'a': \"it's\"}|1e+20 1.5e-07 100.0 0.30000000000000004 0.3333333333333333 5.0"},
		{"loop1", "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.length }}/{{ loop.first }}/{{ loop.last }}|{% endfor %}", "1/0/4/3/4/True/False|2/1/3/2/4/False/False|3/2/2/1/4/False/False|4/3/1/0/4/False/True|"},
		{"loop2", "{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }}{{ loop.cycle('a','b') }} {% else %}none{% endfor %}{% for x in [] %}x{% else %}empty{% endfor %}", "1:usera 2:assistantb 3:usera empty"},
		{"loop3", "{% for k, v in {'a': 1, 'b': [2, 3]}.items() %}{{ k }}={{ v }};{% endfor %}{% for k, v in {'x': 'y'} | items %}{{ k ~ v }}{% endfor %}{% for a, b in [(1, 2), [3, 4]] %}{{ a + b }}{% endfor %}", "a=1;b=[2, 3];xy37"},
		{"loop4", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i > 5 %}{% break %}{% endif %}{{ i }}{% endfor %}{% for i in range(1, 10, 3) %}{{ i }}{% endfor %}{% for i in range(5, 0, -2) %}{{ i }}{% endfor %}", "01345147531"},
		{"loop5", "{% for m in messages %}{{ loop.previtem.role if loop.previtem is defined else '-' }}>{{ loop.nextitem.role if loop.nextitem is defined else '-' }} {% if loop.changed(m.role) %}c{% endif %}{% endfor %}", "->user csystem>assistant cuser>user cassistant>- c"},
		{"macro1", "{% macro greet(name, greeting='Hello', punct='!') %}{{ greeting }}, {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', 'Hi') }} {{ greet('C', punct='?') }} {{ greet(name='D', greeting='Yo') }}", "Hello, A! Hi, B! Hello, C? Yo, D!"},
		{"macro2", "{% macro v() %}{{ varargs }}|{{ kwargs }}{% endmacro %}{{ v(1, 2, a=3) }}{% macro w(x) %}[{{ caller(x) }}]{% endmacro %}{% call(y) w(5) %}got {{ y }}{% endcall %}", "(1, 2)|{'a': 3}[got 5]"},
		{"macro3", "{% macro render(c) %}{% if c is string %}{{ c }}{% else %}{% for p in c %}{{ render(p) }}{% endfor %}{% endif %}{% endmacro %}{{ render(['a', ['b', ['c']], 'd']) }}", "abcd"},
		{"misc1", "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M:%S %A %B %j %y %I%p') }} {{ range(3) | list }} {{ namespace(a=1).a }} {{ dict(a=1, b=2) }} {% set j = joiner(', ') %}{% for i in range(3) %}{{ j() }}{{ i }}{% endfor %} {% set cy = cycler('x', 'y') %}{{ cy.next() }}{{ cy.next() }}{{ cy.next() }}", "03 Dec 2026 2026-12-03 00:00:00 Thursday December 337 26 12AM [0, 1, 2] 1 {'a': 1, 'b': 2} 0, 1, 2 xyx"},
		{"misc2", "{{ bos_token }}{% for message in messages %}{{ message.role | upper }}: {{ message.content | trim }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}{{ tools }} {{ documents }} {{ tools is none }} {{ tools is defined }}", "<s>SYSTEM: You are helpful.</s>USER: Hi!</s>ASSISTANT: Hello.</s>USER: How are you?</s>ASSISTANT:None None True True"},
		{"num1", "{{ 1.0 }} {{ 1e16 }} {{ 1e15 }} {{ 123456789.123 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }} {{ 2**62 }} {{ 3.0 * 2 }} {{ 7 / 7 }} {{ 1_000 }} {{ 0.1 * 3 }}", "1.0 1e+16 1000000000000000.0 123456789.123 0.0001 1e-05 -0.0 4611686018427387904 6.0 1.0 1000 0.30000000000000004"},
		{"repr1", "{{ ['a\\'b', 'c\"d', 'e\\'f\"g', 'tab\\there', 'nl\\n', '\\x01', 'ü', '\\\\'] }}", "[\"a'b\", 'c\"d', 'e\\'f\"g', 'tab\\there', 'nl\\n', '\\x01', 'ü', '\\\\']"},
		{"scope1", "{% set x = 1 %}{% for m in messages %}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}{% set ns = namespace(n=0, s='') %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% set ns.s = ns.s ~ m.role[0] %}{% endfor %}{{ ns.n }}{{ ns.s }}", "222214suau"},
		{"scope2", "{% if true %}{% set y = 'set-in-if' %}{% endif %}{{ y }}{% for i in range(2) %}{% if i == 0 %}{% set z = 'a' %}{% endif %}[{{ z }}]{% endfor %}", "set-in-if[a][]"},
		{"set1", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c %}block {{ a }}{% endset %}[{{ c }}]{% set d | upper %}up{% endset %}{{ d }}{% set t = (1, 2) %}{{ t }}{% with q = 5 %}{{ q }}{% endwith %}[{{ q }}]{% filter upper %}filtered {{ a }}{% endfilter %}", "12[block 1]UP(1, 2)5[]FILTERED 1"},
		{"str1", "{% set s = '  Hello World  ' %}[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxhixx'.strip('x') }}] {{ s.startswith('  H') }} {{ s.endswith(('a', '  ')) }} {{ 'a,b,,c'.split(',') }} {{ ' a  b c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'a-b-c'.rsplit('-', 1) }} {{ s.upper() }} {{ s.lower() }} {{ 'hello world'.title() }} {{ 'hELLO'.capitalize() }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'abcabc'.find('c') }} {{ 'abc'.find('z') }} {{ 'abcabc'.count('b') }} {{ '-'.join(['a', 'b']) }} {{ 'a\\nb\\r\\nc'.splitlines() }} {{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ '5'.zfill(3) }} {{ 'k=v=w'.partition('=') }} {{ 'pre_x'.removeprefix('pre_') }} {{ '{} and {}'.format('a', 1) }} {{ \"they're bill's\".title() }}", "[Hello World][Hello World  ][  Hello World][hi] True True ['a', 'b', '', 'c'] ['a', 'b', 'c'] ['a', 'b c'] ['a-b', 'c']   HELLO WORLD     hello world   Hello World Hello bba 2 -1 2 a-b ['a', 'b', 'c'] True True 005 ('k', '=', 'v=w') x a and 1 They'Re Bill'S"},
		{"test1", "{{ 'a' is string }} {{ 1 is number }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ 1 is true }} {{ false is false }} {{ {} is mapping }} {{ [] is iterable }} {{ 'x' is sequence }} {{ range is callable }} {{ 3 is odd }} {{ 4 is even }} {{ 9 is divisibleby 3 }} {{ 9 is divisibleby(2) }} {{ 'ab' is lower }} {{ 'AB' is upper }} {{ x is undefined }} {{ 1 is sameas 1 }} {{ none is sameas none }} {{ 2 is gt 1 }} {{ 2 is in [1, 2] }} {{ 'upper' is filter }} {{ 'odd' is test }} {{ 1 is not string }} {{ 'a' is eq 'a' }} {{ 'a' is ne 'b' }} {{ 1 is le 1 }}", "True True True True True False True True True True True True True True False True True True True True True True True True True True True True"},
		{"trim_nl", "{% if true %}\r\nA\r\n{% endif %}\r\nB\r\n", "A\nB"},
		{"undef1", "{{ undefined_var }}|{{ undefined_var | length }}|{{ undefined_var | trim }}|{{ undefined_var | upper }}|{{ undefined_var | list }}|{{ undefined_var | join(',') }}|{% for x in undefined_var %}x{% endfor %}|{{ 'a' in undefined_var }}|{{ undefined_var is none }}|{{ undefined_var == undefined_other }}|{{ undefined_var ~ 'x' }}|{{ undefined_var | default('D') }}|{{ undefined_var | first }}", "|0|||[]|||False|False|True|x|D|"},
		{"unicode1", "{{ messages[0].content[0] }}{{ messages[0].content | length }}{{ messages[0].content | tojson }}{{ messages[0].content | upper }}{{ messages | tojson }}", "Y16\"You are helpful.\"YOU ARE HELPFUL.[{\"role\": \"system\", \"content\": \"You are helpful.\"}, {\"role\": \"user\", \"content\": \"Hi!\"}, {\"role\": \"assistant\", \"content\": \"Hello.\"}, {\"role\": \"user\", \"content\": \"How are you?\"}]"},
		{"ws1", "a\n  {% if true %}\n    b\n  {% endif %}\nc\n", "a\n    b\nc"},
		{"ws2", "  {% if true %}x{% endif %}  \n{%+ if true %}y{% endif %}", "x  \ny"},
		{"ws3", "{% for m in messages %}\n    {{ m.role }}\n    {%- if loop.last %} last{% endif %}\n{% endfor %}\n\n", "    system    user    assistant    user last"},
		{"ws4", "x  {# c #}  y\n   {# c2 #}\nz {{ 'v' }}  {% if 1 %}q{% endif %}", "x    y\nz v  q"},
		{"ws5", "{%- for m in messages -%}\n  [{{ m.content }}]\n{%- endfor %}\n  tail  \n", "[You are helpful.][Hi!][Hello.][How are you?]  tail  "},
		{"ws6", "A\n\t  {%- if true -%}\n\n B \n\n{%- endif -%}  \n C", "ABC"},
		{"ws7", "{% raw %}{{ not }}{% endraw %}\n  {% raw -%}  x  {%- endraw %}y", "{{ not }}xy"},
		{"f_cmp_str_num", "{{ '1' == 1 }} {{ 1 == true }} {{ 0 == false }} {{ none == false }} {{ '' == none }}", "False True True False False"},
		{"f_comment_lines", "{#- header -#}\n{% for m in messages %}\n  {# per-message #}\n  {{ m.role }}\n{% endfor %}\n{# end #}\nDONE\n\n", "  system\n  user\n  assistant\n  user\nDONE\n"},
		{"f_cond_nl", "{% for m in messages %}{{ '\\n' if not loop.first }}{{ m.content }}{% endfor %}", "You are helpful.\nHi!\nHello.\nHow are you?"},
		{"f_dict_lit_order", "{{ {'z': 1, 'a': 2, 'm': 3} }} {{ {'z': 1, 'a': 2} | tojson }} {{ dict(b=1, a=2) | items | list }}", "{'z': 1, 'a': 2, 'm': 3} {\"z\": 1, \"a\": 2} [('b', 1), ('a', 2)]"},
		{"f_first_attr", "{{ (messages | first).role }} {% set x = messages | selectattr('role', 'equalto', 'system') | first %}{{ x.content if x is defined else 'nosys' }}", "system You are helpful."},
		{"f_first_empty", "[{{ [] | first }}]{{ ([] | first) is defined }}", "[]False"},
		{"f_format_method", "{{ '{0}-{1}-{0}'.format('a', 'b') }} {{ '{name}!'.format(name='x') }} {{ '{{}} {}'.format(5) }}", "a-b-a x! {} 5"},
		{"f_in_dict_keys", "{% set m = messages[0] %}{{ 'tool_calls' in m }} {{ 'role' in m.keys() }} {{ m | length }} {{ m | dictsort }}", "False True 2 [('content', 'You are helpful.'), ('role', 'system')]"},
		{"f_int_filters", "{{ '  12 ' | int }} {{ '0x1A' | int(0, 16) }} {{ '1e3' | int }} {{ true | int }} {{ 'nan' | float }} {{ '3' | float }}", "12 26 1000 1 nan 3.0"},
		{"f_loop_last_gen", "{% for m in messages %}{% if loop.last and m.role == 'user' and add_generation_prompt %}<gen>{% endif %}{% endfor %}", "<gen>"},
		{"f_lstrip_nested", "<s>\n    {%- for m in messages %}\n        {%- if m.role == 'user' %}\n    U: {{ m.content }}\n        {% elif m.role == 'assistant' %}\n    A: {{ m.content }}\n        {%- endif %}\n    {% endfor %}\n</s>", "<s>    U: Hi!\n    A: Hello.    U: How are you?\n</s>"},
		{"f_macro_kw", "{% macro m(a, b) %}{{ a }}-{{ b }}-{{ kwargs }}{% endmacro %}{{ m(1, b=2) }}|{{ m(b=3, a=4) }}", "1-2-{}|4-3-{}"},
		{"f_not_in", "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}[{{ m.role }}]{% endif %}{% endfor %}{{ (messages | length) - 1 }}", "[system]3"},
		{"f_ns_list", "{% set ns = namespace(roles=[]) %}{% for m in messages %}{% set ns.roles = ns.roles + [m.role] %}{% endfor %}{{ ns.roles }} {{ ns.roles | unique | list | length }}", "['system', 'user', 'assistant', 'user'] 3"},
		{"f_ns_print", "{% set ns = namespace(a=1, b='x') %}{{ ns.a }}{{ ns.b }}{{ ns.c is defined }}", "1xFalse"},
		{"f_replace_nl", "{{ messages[0].content | replace('.', '\\\\n') }} {{ '\\n\\n'.join(messages | map(attribute='role')) }}", "You are helpful\\n system\n\nuser\n\nassistant\n\nuser"},
		{"f_slice_msgs", "{% for m in messages[1:-1] %}{{ m.role }},{% endfor %}{% for m in messages[:1] %}{{ m.content }}{% endfor %}{{ messages[-2:] | map(attribute='role') | join('/') }}", "user,assistant,You are helpful.assistant/user"},
		{"f_string_methods2", "{{ 'Hello'.center(11, '*') }} {{ 'ab'.ljust(4, '.') }}| {{ 'x y'.rjust(5) }} {{ 'A'.isupper() }} {{ 'Ab'.islower() }} {{ ''.isdigit() }} {{ 'a b'.rpartition(' ') }} {{ 'abc'.index('b') }}", "***Hello*** ab..|   x y True False False ('a', ' ', 'b') 1"},
		{"f_strip_chain", "{{ messages[-1].content.strip().lower().replace('?', '!').split(' ') | join('_') }}", "how_are_you!"},
		{"f_sum_len", "{{ messages | map(attribute='content') | map('length') | sum }} {{ [1.5, 2] | sum }} {{ [[1], [2]] | sum(start=[]) }}", "37 3.5 [1, 2]"},
		{"f_title_caps", "{{ messages[1].content | title }} {{ 'ABC def' | capitalize }} {{ 'mIxEd' | lower | upper }}", "Hi! Abc def MIXED"},
		{"f_tools_json", "{{ tools | tojson }} {{ documents }} {% if tools is not none %}T{% else %}N{% endif %}", "null None N"},
		{"f_undefined_tests", "{{ foo is none }} {{ foo is not defined }} {{ foo is string }} {{ foo is mapping }} {{ foo is number }} {{ (foo or {}).get('x', 'd') }}", "False True False False False d"},
		{"f_with_scope", "{% set a = 1 %}{% with a = 2, b = a %}{{ a }}{{ b }}{% endwith %}{{ a }}", "211"},
	}
	for _, tt := range tests {
		got, err := RenderChat(tt.template, semMsgs, true, "<s>", "</s>")
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("%s: %q\n got %q\nwant %q", tt.name, tt.template, got, tt.want)
		}
	}
}

// Templates that Jinja (as transformers runs it) rejects at run time are errors here too.
func TestRenderErrors(t *testing.T) {
	tests := []struct{ name, template, msg string }{
		{"undefined attribute", "{{ foo.bar }}", "'foo' is undefined"},
		{"undefined call", "{{ foo() }}", "'foo' is undefined"},
		{"undefined arithmetic", "{{ foo + 'x' }}", "'foo' is undefined"},
		{"tojson undefined", "{{ foo | tojson }}", "not JSON serializable"},
		{"type error", "{{ 1 + 'a' }}", "unsupported operand types for +"},
		{"ordering", "{{ 1 < 'a' }}", "not supported between"},
		{"in string", "{{ 1 in 'abc' }}", "requires string as left operand"},
		{"zero division", "{{ 1 // 0 }}", "division or modulo by zero"},
		{"index out of range", "{{ messages[10].role }}", "index out of range"},
		{"len of int", "{{ 5 | length }}", "has no len()"},
		{"none not iterable", "{% for t in tools %}{% endfor %}", "NoneType object is not iterable"},
		{"unpack", "{% for a, b in [1, 2] %}{% endfor %}", "cannot unpack"},
		{"mutation", "{% set l = [1] %}{{ l.append(2) }}", "modifies the object"},
		{"dict mutation", "{% set d = {} %}{{ d.update({'a': 1}) }}", "modifies the object"},
		{"attribute of non-namespace", "{% set d = {} %}{% set d.x = 1 %}", "only namespace objects"},
		{"unknown filter", "{{ 'a' | frobnicate }}", `unsupported filter "frobnicate"`},
		{"unknown test", "{{ 'a' is frobnicated }}", `unsupported test "frobnicated"`},
		{"random", "{{ [1, 2] | random }}", "not deterministic"},
		{"include", "{% include 'x.jinja' %}", "unsupported tag {% include %}"},
		{"extends", "{% extends 'x.jinja' %}", "unsupported tag {% extends %}"},
		{"recursive loop", "{% for m in messages recursive %}{{ loop(m.children) }}{% endfor %}", "recursive loops"},
		{"caller outside call", "{% macro m() %}{{ caller() }}{% endmacro %}{{ m() }}", "'caller' is undefined"},
		{"parse error", "{% if %}", "unexpected"},
		{"dunder attribute", "{{ messages.__class__ }}", `internal attribute "__class__" is refused`},
		{"dunder item", "{{ messages[0]['__class__'] }}", `"__class__" is refused`},
		{"dunder via attr filter", "{{ messages | attr('__class__') }}", `"__class__" is refused`},
		{"dunder via map", "{{ messages | map(attribute='__class__') | list }}", `"__class__" is refused`},
		{"dunder via selectattr", "{{ messages | selectattr('__class__.__name__') | list }}", `"__class__" is refused`},
		{"ssti chain", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "is refused"},
		{"dangerous attribute", "{{ cycler.next.func_globals }}", `"func_globals" is refused`},
		{"namespace dunder", "{% set ns = namespace() %}{% set ns.__dict__ = 1 %}", "is refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := RenderChat(tt.template, convSystem, true, "<s>", "</s>")
			if err == nil {
				t.Fatalf("RenderChat(%q) = %q, want an error", tt.template, out)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("RenderChat(%q) = %v, want %q", tt.template, err, tt.msg)
			}
		})
	}
}

func TestRenderErrorOffset(t *testing.T) {
	src := "line one\n{% set x = 1 %}\n  {{ x.y.z }}"
	_, err := RenderChat(src, nil, false, "", "")
	var re *RenderError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v, want a *RenderError", err)
	}
	if re.Line != 3 || re.Offset != strings.Index(src, "x.y.z") {
		t.Errorf("error at offset %d line %d, want offset %d line 3 (%v)", re.Offset, re.Line, strings.Index(src, "x.y.z"), re)
	}
	if !strings.Contains(err.Error(), "offset") || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("error text %q names no position", err)
	}
	// offsets stay those of the template as given when "+%}" handling inserts text
	src = "{% if true +%}\n{{ foo.bar }}{% endif %}"
	_, err = RenderChat(src, nil, false, "", "")
	if !errors.As(err, &re) || re.Offset != strings.Index(src, "foo") || re.Line != 2 {
		t.Errorf("err = %v (%+v), want offset %d line 2", err, re, strings.Index(src, "foo"))
	}
}

// Hostile templates fail quickly with a limit error.
func TestRenderLimits(t *testing.T) {
	tests := []struct{ name, template, msg string }{
		{"huge range", "{% for i in range(10**9) %}x{% endfor %}", "larger than the sandbox"},
		{"nested loops", "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "steps"},
		{"infinite recursion", "{% macro r(n) %}{{ r(n + 1) }}{% endmacro %}{{ r(0) }}", "nested deeper"},
		{"fan-out recursion", "{% macro r(n) %}{{ r(n) }}{{ r(n) }}{% endmacro %}{{ r(0) }}", "nested deeper"},
		{"caller recursion", "{% macro m() %}{% call m() %}x{% endcall %}{% endmacro %}{{ m() }}", "nested deeper"},
		{"string multiplication", "{{ 'a' * 10**9 }}", "limit"},
		{"string doubling", "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "limit"},
		{"list doubling", "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}", "items"},
		{"list multiplication", "{{ [1, 2] * 10**8 }}", "items"},
		{"quadratic list growth", "{% set ns = namespace(l=[]) %}{% for i in range(100000) %}{% set ns.l = ns.l + [i] %}{% endfor %}", "steps"},
		{"output size", "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}", "output exceeds"},
		{"replace blow-up", "{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s.replace('a', 'aa') %}{% endfor %}", "limit"},
		{"power overflow", "{{ 10 ** 100 }}", "overflow"},
		{"range near the int limit", "{{ range(-9223372036854775807, 9223372036854775807) }}", "larger than the sandbox"},
		{"deep nesting", "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x }}", "nested deeper"},
		{"deep tojson", "{% set ns = namespace(x=[]) %}{% for i in range(5000) %}{% set ns.x = [ns.x] %}{% endfor %}{{ ns.x | tojson }}", "nested deeper"},
		{"indent blow-up", "{{ ('a\n' * 1000) | indent(100000) }}", "limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			out, err := RenderChat(tt.template, convSystem, true, "<s>", "</s>")
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}
			if err == nil {
				t.Fatalf("RenderChat(%q) = %d bytes, want an error", tt.template, len(out))
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("RenderChat(%q) = %v, want %q", tt.template, err, tt.msg)
			}
		})
	}
}

func TestRenderExtremeSlices(t *testing.T) {
	tests := map[string]string{
		"{{ 'abc'[1::9223372036854775807] }}":                              "b",
		"{{ 'abc'[::-9223372036854775807] }}":                              "c",
		"{{ 'abc'[::-9223372036854775807-1] }}":                            "c",
		"{{ [1, 2, 3][-9223372036854775807:2] }}":                          "[1, 2]",
		"{{ range(9223372036854775806, 9223372036854775807, 10) | list }}": "[9223372036854775806]",
	}
	for src, want := range tests {
		got, err := RenderChat(src, nil, false, "", "")
		if err != nil || got != want {
			t.Errorf("RenderChat(%q) = %q, %v; want %q", src, got, err, want)
		}
	}
}

func TestPyFormatting(t *testing.T) {
	floats := map[float64]string{1: "1.0", 0.1: "0.1", 1e16: "1e+16", 1e15: "1000000000000000.0", 1.5e-7: "1.5e-07",
		0.0001: "0.0001", 0.00001: "1e-05", -2.5: "-2.5", 123456789.123: "123456789.123", 1e100: "1e+100"}
	for f, want := range floats {
		if got := pyFloat(f); got != want {
			t.Errorf("pyFloat(%v) = %q, want %q", f, got, want)
		}
	}
	strs := map[string]string{"a": "'a'", "it's": `"it's"`, `a'b"c`: `'a\'b"c'`, "t\tn\n": `'t\tn\n'`, "\x01": `'\x01'`, "ü": "'ü'", `\`: `'\\'`}
	for s, want := range strs {
		if got := pyStrRepr(s); got != want {
			t.Errorf("pyStrRepr(%q) = %s, want %s", s, got, want)
		}
	}
	if got := strftime("%d %b %Y|%-d %B|%A %H:%M|%j|%y-%m-%d|%%|%Q", renderNow); got != "03 Dec 2026|3 December|Thursday 00:00|337|26-12-03|%|%Q" {
		t.Errorf("strftime = %q", got)
	}
}

func FuzzRenderChat(f *testing.F) {
	templateSeeds(f)
	for _, s := range []string{zephyrInline, llama3Inline, gemma3Style,
		"{% for i in range(10**9) %}{% endfor %}", "{% macro r() %}{{ r() }}{% endmacro %}{{ r() }}",
		"{{ 'a' * 10**9 }}", "{{ messages.__class__ }}", "{{ -3 | abs }}{{ x[::-1] }}{{ 'a'[1:] }}",
		"{% set ns = namespace(a=1) %}{% set ns.a = ns.a + 1 %}{{ ns.a }}", "{% if true +%}\n{# c +#}\nx",
		"{{ messages | selectattr('role', 'equalto', 'user') | map(attribute='content') | join('\\n') }}",
		"{{ '%s %d' % ('a', 1) }}{{ '{} {x}'.format(1, x=2) }}{{ 1.5 | round }}{{ [3, 1] | sort }}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		watchdog := time.AfterFunc(20*time.Second, func() { panic("RenderChat is not bounded on this input") })
		defer watchdog.Stop()
		start := time.Now()
		out, err := RenderChat(src, convSystem, true, "<s>", "</s>")
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("RenderChat took %v on %d bytes", d, len(src))
		}
		if err == nil && len(out) > maxRenderOutput {
			t.Errorf("output of %d bytes", len(out))
		}
		var re *RenderError
		if errors.As(err, &re) && (re.Offset < 0 || re.Offset > len(src) || re.Line < 1) {
			t.Errorf("error position %+v out of range", re)
		}
	})
}
