package roles

import "strings"

// maxComps bounds the path components kept on the stack; further components stay joined in
// the last one.
const maxComps = 48

// layerSource says where a Layer came from.
type layerSource uint8

const (
	srcNone      layerSource = iota // no number: Layer -1
	srcStack                        // a block container: layers.N, blk.N, h.N, ...
	srcComposite                    // nested blocks combined into one key (ResNet, UNet)
	srcFallback                     // a number somewhere in the name (fc2, net.3)
)

// info is what classify learns beyond the Role, for ClassifyAll and FindHead.
type info struct {
	src        layerSource
	leaf       string // the module name the role was read from
	encStack   bool   // in a numbered block of an encoder
	decGuess   bool   // "dec_" added for an ambiguous decoder.layers stack
	unresolved bool   // role not known from the name; a sibling weight may tell
}

func (i info) inStack() bool { return i.src == srcStack || i.src == srcComposite }

// headable reports whether a dense layer may be the model's head: it is not inside a
// transformer block, or it is itself an entry of a numbered list (layers.2.weight).
func (i info) headable() bool { return !i.inStack() || isNum(i.leaf) }

// flag marks the context a path component establishes for the components after it.
type flag uint32

const (
	fAttn    flag = 1 << iota // inside an attention module
	fCross                    // inside a cross-attention module
	fMLP                      // inside an MLP / feed-forward / MoE module
	fExperts                  // inside the routed experts
	fShexp                    // inside a shared expert
	fHead                     // inside a head (lm_head, cls, classifier, ...)
	fPooler                   // inside BERT's pooler
	fEmb                      // inside an embeddings module
	fOut                      // inside BERT's block "output" module
	fInter                    // inside BERT's "intermediate" module
	fResnet                   // inside a diffusers resnet
	fPatch                    // inside a patch embedding
	fMixer                    // inside a mamba mixer
	fTime                     // inside a timestep embedding
	fEnc                      // inside an encoder
	fDec                      // inside a decoder
	fVis                      // inside a vision tower
	fAud                      // inside an audio tower
	fMM                       // inside a multimodal projector
)

// walk is the result of reading a module path.
type walk struct {
	f       flag
	layer   int
	src     layerSource
	stack   string // the primary block container ("layers", "h", "blk", ...)
	t5sub   int    // T5 sub-layer index (block.N.layer.K), -1 when none
	decSure bool   // the decoder belongs to an encoder-decoder model for certain
	unet    bool
}

func (w *walk) inStack() bool { return w.src == srcStack || w.src == srcComposite }

// param is what the parameter part of a name (after the module path) says.
type param struct {
	kind   string // KindWeight, KindBias, KindNorm, KindScale, KindOther or "" (no parameter name)
	role   string // role implied by the parameter itself (buffers), "" when none
	lora   string // KindLoRAA, KindLoRAB or ""
	gamma  bool   // the parameter was named gamma
	scaled bool   // the parameter was a bare "scale" (a norm weight in Flax, else a quant scale)
}

// classify is Classify that also reports what ClassifyAll needs.
func classify(name string, shape []int64) (Role, info) {
	var buf [maxComps]string
	keras := false
	if i := strings.LastIndexByte(name, ':'); i >= 0 && isNum(name[i+1:]) {
		name, keras = name[:i], true
	}
	if strings.IndexByte(name, '/') >= 0 {
		keras = true
	}
	var comps []string
	if p := kohyaPrefix(name); p > 0 {
		mod, rest := name[p:], ""
		if dot := strings.IndexByte(mod, '.'); dot >= 0 {
			mod, rest = mod[:dot], mod[dot+1:]
		}
		comps = splitKohya(mod, buf[:0:maxComps-4])
		comps = split(rest, buf[:len(comps):maxComps])
	} else {
		comps = split(name, buf[:0])
	}

	var p param
	comps = stripParam(comps, &p)
	comps = dropWrappers(comps)

	var w walk
	w.read(comps, keras)
	role, unresolved := resolve(comps, &w, &p, shape)

	inf := info{src: w.src, unresolved: unresolved}
	if n := len(comps); n > 0 {
		inf.leaf = comps[n-1]
	}
	inf.encStack = w.inStack() && w.f&fEnc != 0 && w.f&fDec == 0
	role = w.prefix(role, &inf)

	return Role{Layer: w.layer, Role: role, Kind: kindOf(role, &p, shape)}, inf
}

// kindOf settles the Kind from the parameter name, the role and the shape.
func kindOf(role string, p *param, shape []int64) string {
	switch {
	case p.lora != "":
		return p.lora
	case p.kind == KindScale && !(p.scaled && isNormRole(role)):
		return KindScale
	case role == RoleRopeFreqs || role == RoleAttnMask || role == RoleLayerScale:
		return KindOther
	case p.kind == KindOther:
		return KindOther
	case isNormRole(role) || p.kind == KindNorm:
		return KindNorm
	case p.kind != "":
		return p.kind
	case role != RoleOther || len(shape) >= 2:
		return KindWeight // a parameter named by its module: cls_token, A_log, pos_embed
	}
	return KindOther
}

// prefix adds the "vis_", "aud_", "xattn_" or "dec_" prefix the walk calls for.
func (w *walk) prefix(role string, inf *info) string {
	if role == RoleOther || w.f&fMM != 0 {
		return role
	}
	switch {
	case w.f&fVis != 0:
		return prefixed(visRoles, "vis_", role)
	case w.f&fAud != 0:
		return prefixed(audRoles, "aud_", role)
	case w.f&fCross != 0 && strings.HasPrefix(role, "attn_"):
		return prefixed(crossRoles, "x", role)
	}
	if w.f&fDec != 0 && w.inStack() && !strings.HasPrefix(role, "xattn_") {
		inf.decGuess = !w.decSure
		return prefixed(decRoles, "dec_", role)
	}
	return role
}

func prefixed(m map[string]string, p, role string) string {
	if r, ok := m[role]; ok {
		return r
	}
	return p + role
}

// split appends the '.'- and '/'-separated components of s to dst, never growing dst beyond
// its capacity: the last slot then holds the rest of s.
func split(s string, dst []string) []string {
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] != '.' && s[i] != '/' {
			continue
		}
		if i > start {
			if len(dst) >= cap(dst)-1 {
				break
			}
			dst = append(dst, s[start:i])
		}
		start = i + 1
	}
	if start < len(s) && len(dst) < cap(dst) {
		dst = append(dst, s[start:])
	}
	return dst
}

// kohyaPrefix returns the length of a kohya-ss LoRA prefix (lora_unet_, lora_te_, ...), 0 when
// name has none.
func kohyaPrefix(name string) int {
	if !strings.HasPrefix(name, "lora_") {
		return 0
	}
	for _, p := range kohyaPrefixes {
		if strings.HasPrefix(name, p) {
			return len(p)
		}
	}
	return 0
}

// splitKohya splits a kohya module name (down_blocks_0_attentions_0_..._to_q) at '_' and
// joins the tokens that form known compound component names again.
func splitKohya(s string, dst []string) []string {
	end := func(i int) int {
		if j := strings.IndexByte(s[i:], '_'); j >= 0 {
			return i + j
		}
		return len(s)
	}
	for i := 0; i < len(s); {
		if len(dst) >= cap(dst)-1 {
			return append(dst, s[i:])
		}
		// The longest run of up to three tokens that forms a compound name, else one token.
		e := end(i)
		for k, t := 1, e; k < 3 && t < len(s); k++ {
			t = end(t + 1)
			if kohyaCompounds[s[i:t]] {
				e = t
			}
		}
		if e > i {
			dst = append(dst, s[i:e])
		}
		i = e + 1
	}
	return dst
}

// stripParam removes the parameter part (weight, bias, lora_A.weight, weight_scale_inv, ...)
// from the end of comps and records what it says in p.
func stripParam(c []string, p *param) []string {
	if len(c) == 0 {
		return c
	}
	last := c[len(c)-1]
	pop := func() {
		c = c[:len(c)-1]
		if len(c) > 0 {
			last = c[len(c)-1]
		} else {
			last = ""
		}
	}

	// Adapter parameters that are not factors of a weight.
	switch {
	case last == "lora_embedding_A":
		p.lora = KindLoRAA
		pop()
		return c
	case last == "lora_embedding_B":
		p.lora = KindLoRAB
		pop()
		return c
	case last == "alpha" || last == "dora_scale" || strings.HasPrefix(last, "hada_") || strings.HasPrefix(last, "lokr_"):
		p.kind = KindOther
		pop()
		return c
	}

	// Quantization data.
	if strings.HasPrefix(last, "bitsandbytes__") {
		pop()
		if last == "quant_state" {
			pop()
		}
		p.kind = KindScale
		if last == "weight" {
			pop()
		}
		return c
	}
	if quantParams[last] {
		pop()
		p.kind = KindScale
		if last == "weight" {
			pop()
		}
		return c
	}
	for _, s := range quantSuffixes {
		if len(last) > len(s) && strings.HasSuffix(last, s) {
			base := last[:len(last)-len(s)]
			if quantBases[base] {
				pop()
				p.role = kvScaleRoles[base] // self_attn.k_scale: the KV-cache scale of the keys
			} else if s == "_scale" || s == "_shape" || s == "_zero_point" {
				break // layer_scale, logit_scale: not quantization
			} else {
				c[len(c)-1] = base
			}
			p.kind = KindScale
			return c
		}
	}

	// The parameter name proper.
	switch last {
	case "weight", "kernel", "W", "w", "depthwise_kernel", "pointwise_kernel", "recurrent_kernel":
		p.kind = KindWeight
		pop()
	case "bias", "b", "depthwise_bias":
		p.kind = KindBias
		pop()
	case "gamma", "beta":
		p.kind, p.gamma = KindNorm, last == "gamma"
		pop()
	case "running_mean", "running_var", "num_batches_tracked", "moving_mean", "moving_variance":
		p.kind = KindNorm
		pop()
	case "scale":
		p.kind, p.scaled = KindScale, true
		pop()
	case "inv_freq", "cos_cached", "sin_cached", "_cos_cached", "_sin_cached":
		p.kind, p.role = KindOther, RoleRopeFreqs
		pop()
	case "masked_bias":
		p.kind, p.role = KindOther, RoleAttnMask
		pop()
	case "position_ids":
		p.kind, p.role = KindOther, RolePosEmbed
		pop()
	case "e_score_correction_bias":
		p.kind, p.role = KindBias, RoleMoERouter
		pop()
	case "_float_tensor":
		p.kind = KindOther
		pop()
	default:
		switch {
		case strings.HasPrefix(last, "weight_"): // RNN weight_ih_l0
			p.kind = KindWeight
			pop()
		case strings.HasPrefix(last, "bias_"):
			p.kind = KindBias
			pop()
		case strings.HasSuffix(last, "_weight") && len(last) > 7: // MHA in_proj_weight
			p.kind = KindWeight
			c[len(c)-1] = last[:len(last)-7]
			return c
		case strings.HasSuffix(last, "_bias") && len(last) > 5:
			p.kind = KindBias
			c[len(c)-1] = last[:len(last)-5]
			return c
		}
	}

	// LoRA factors: lora_A[.adapter], lora_down, lora.down, lora_linear_layer.down, to_q_lora.down.
	if n := len(c); n >= 2 && (c[n-2] == "lora_A" || c[n-2] == "lora_B") {
		pop() // the adapter name of an unsaved PEFT model: lora_A.default.weight
	}
	switch last {
	case "lora_A", "lora_down":
		p.lora = KindLoRAA
		pop()
	case "lora_B", "lora_up":
		p.lora = KindLoRAB
		pop()
	case "down", "up":
		n := len(c)
		if n < 2 {
			break
		}
		prev := c[n-2]
		f := KindLoRAA
		if last == "up" {
			f = KindLoRAB
		}
		switch {
		case prev == "lora" || prev == "lora_linear_layer":
			p.lora = f
			c = c[:n-2]
		case strings.HasSuffix(prev, "_lora") && len(prev) > 5:
			p.lora = f
			c = c[:n-1]
			c[n-2] = prev[:len(prev)-5]
		}
	}
	return c
}

// dropWrappers removes components that wrappers insert into a module path: PEFT's base_layer,
// modules_to_save.<adapter>, original_module.
func dropWrappers(c []string) []string {
	for _, x := range c {
		if wrappers[x] {
			goto filter
		}
	}
	return c
filter:
	out := c[:0]
	for i := 0; i < len(c); i++ {
		switch {
		case c[i] == "modules_to_save":
			i++ // and the adapter name
		case wrappers[c[i]]:
		default:
			out = append(out, c[i])
		}
	}
	return out
}

// read walks the module path m: contexts, sections and the layer.
func (w *walk) read(m []string, keras bool) {
	w.layer, w.t5sub = -1, -1
	n := len(m)
	l1, l2, stackAt := -1, -1, -1
	ubase, ua, ut := 0, 0, 0
	for i := 0; i < n; i++ {
		c := m[i]
		num := -1
		if i+1 < n {
			num = atoi(m[i+1])
		}
		if i < n-1 {
			w.f |= ctxFlags[c]
			if i == 0 {
				switch c {
				case "enc":
					w.f |= fEnc
				case "dec":
					w.f |= fDec
					w.decSure = true
				case "v":
					w.f |= fVis
				case "a":
					w.f |= fAud
				case "mm":
					w.f |= fMM
				}
			}
		}
		switch {
		case c == "down_blocks" && num >= 0:
			w.unet, ubase = true, 100*num
		case c == "up_blocks" && num >= 0:
			w.unet, ubase = true, 600+100*num
		case c == "mid_block":
			w.unet, ubase = true, 500
		case w.unet && (c == "attentions" || c == "resnets") && num >= 0:
			ua = num
		case w.unet && c == "transformer_blocks" && num >= 0:
			ut = num
		case w.unet:
		case l1 < 0 && num >= 0 && stackContainers[c]:
			l1, stackAt, w.stack = num, i+1, c
		case l1 < 0 && num >= 0 && isResNetStage(c):
			l1, l2, stackAt, w.stack = atoi(c[5:]), num, i+1, "layer"
		case l1 >= 0 && l2 < 0 && i > stackAt:
			switch {
			case c == "blocks" && num >= 0:
				l2 = num
			case i == stackAt+1 && isNum(c) && w.stack != "block":
				l2 = atoi(c) // EfficientNet blocks.S.B
			case w.stack == "block" && c == "layer" && num >= 0:
				w.t5sub = num
			}
		}
	}
	if w.f&fDec != 0 && w.stack == "block" {
		w.decSure = true // T5
	}
	switch {
	case w.unet:
		w.layer, w.src = ubase+10*ua+ut, srcComposite
		return
	case l2 >= 0:
		w.layer, w.src = 100*l1+l2, srcComposite
		return
	case l1 >= 0:
		w.layer, w.src = l1, srcStack
		return
	}
	// Fallback: a number in the name. Keras: the layer's own counter.
	if keras {
		for i := n - 1; i >= 0; i-- {
			if v := trailingNum(m[i]); v >= 0 {
				w.layer = v
				break
			}
			if kerasBases[m[i]] {
				w.layer = 0
				break
			}
		}
	} else {
		for _, c := range m {
			v := atoi(c)
			if v < 0 {
				v = trailingNum(c)
			}
			if v >= 0 {
				w.layer = v
				break
			}
		}
	}
	if w.layer >= 0 {
		w.src = srcFallback
	}
}

// resolve returns the base role of module path m (no section prefix yet) and whether only a
// sibling can tell.
func resolve(m []string, w *walk, p *param, shape []int64) (string, bool) {
	if p.role != "" {
		return p.role, false
	}
	n := len(m)
	if n == 0 {
		return RoleOther, false
	}
	leaf, parent, grand := m[n-1], at(m, n-2), at(m, n-3)

	if w.f&fMM != 0 {
		if isNormName(leaf) || p.kind == KindNorm || p.kind == KindWeight && len(shape) == 1 {
			return RoleNorm, false
		}
		return RoleMMProj, false
	}
	if p.kind == KindBias && ctxFlags[leaf]&fAttn != 0 {
		return RoleAttnMask, false // GPT-2 / GPT-NeoX causal mask buffer h.N.attn.bias
	}
	if p.gamma && (isNum(leaf) || stackContainers[leaf]) {
		return RoleLayerScale, false // ConvNeXt blocks.N.gamma
	}

	if isNum(leaf) {
		switch {
		case parent == "to_out":
			return RoleAttnOut, false
		case parent == "net" && grand == "ff":
			if leaf == "0" {
				return RoleFFNGateUp, false
			}
			return RoleFFNDown, false
		case parent == "img_mlp" || parent == "txt_mlp":
			if leaf == "0" {
				return RoleFFNUp, false
			}
			return RoleFFNDown, false
		}
		if parent != "" && !isNum(parent) && !stackContainers[parent] && !seqContainers[parent] {
			if r := resolveNamed(parent, grand, w, p, shape); r != RoleOther {
				if r == RoleHead {
					r = RoleDense // classifier.6: a Linear of the head Sequential; FindHead decides
				}
				return r, false
			}
		}
		return byShape(w, p, shape)
	}
	if r := resolveNamed(leaf, parent, w, p, shape); r != RoleOther {
		return r, false
	}
	if p.kind == KindNorm {
		return w.norm(), false
	}
	return RoleOther, false
}

// byShape guesses the role of an anonymous Sequential entry from its shape.
func byShape(w *walk, p *param, shape []int64) (string, bool) {
	switch {
	case p.kind == KindNorm:
		return w.norm(), false
	case p.kind != KindWeight && p.kind != KindScale && p.lora == "":
		return RoleOther, true
	case len(shape) >= 3:
		return RoleConv, false
	case len(shape) == 2:
		return RoleDense, false
	case len(shape) == 1 && p.lora == "":
		return w.norm(), false
	}
	return RoleOther, true
}

// norm is the role of a norm in the walk's context.
func (w *walk) norm() string {
	switch {
	case w.f&fHead != 0:
		return RoleNorm
	case w.f&fMixer != 0:
		return RoleSSMNorm
	case w.f&(fAttn|fCross) != 0:
		return RoleAttnNorm
	case w.f&fMLP != 0:
		return RoleFFNNorm
	case w.f&fEmb != 0:
		return RoleEmbedNorm
	case w.f&fPatch != 0:
		return RoleEmbedNorm
	case !w.inStack():
		return RoleNorm
	case w.f&fOut != 0:
		return RoleFFNNorm // BERT layer.N.output.LayerNorm
	case w.t5sub == 0:
		return RoleAttnNorm
	case w.t5sub == 1 && w.f&fDec != 0:
		return "xattn_norm"
	case w.t5sub >= 1:
		return RoleFFNNorm
	}
	return RoleNorm
}

// ffn maps a gated-MLP projection to its role among dense, routed and shared experts.
func (w *walk) ffn(dense, expert, shared string) string {
	switch {
	case w.f&fShexp != 0:
		return shared
	case w.f&fExperts != 0:
		return expert
	}
	return dense
}

// resolveNamed maps a named module (leaf) to its base role, RoleOther when unknown.
func resolveNamed(leaf, parent string, w *walk, p *param, shape []int64) string {
	if r, ok := exact[leaf]; ok {
		return r
	}
	in := w.inStack()
	attn := w.f&(fAttn|fCross) != 0
	switch leaf {
	case "gate_proj":
		return w.ffn(RoleFFNGate, RoleExpertGate, RoleShexpGate)
	case "up_proj":
		return w.ffn(RoleFFNUp, RoleExpertUp, RoleShexpUp)
	case "down_proj":
		return w.ffn(RoleFFNDown, RoleExpertDown, RoleShexpDown)
	case "gate_up_proj":
		return w.ffn(RoleFFNGateUp, RoleExpertGateUp, RoleFFNGateUp)
	case "w1":
		if w.f&fMLP != 0 && w.stack == "h" && w.f&fExperts == 0 {
			return RoleFFNUp // Qwen(1): w1 is up, w2 the gate
		}
		return w.ffn(RoleFFNGate, RoleExpertGate, RoleShexpGate)
	case "w2":
		if w.f&fMLP != 0 && w.stack == "h" && w.f&fExperts == 0 {
			return RoleFFNGate
		}
		return w.ffn(RoleFFNDown, RoleExpertDown, RoleShexpDown)
	case "w3", "v1": // v1: DBRX experts
		return w.ffn(RoleFFNUp, RoleExpertUp, RoleShexpUp)
	case "ff_out":
		if in {
			return RoleFFNDown // OLMo
		}
		return RoleHead
	case "layer":
		if parent == "router" {
			return RoleMoERouter // DBRX ffn.router.layer
		}
		return RoleOther
	case "wo":
		if w.f&fMLP != 0 || !attn && in {
			return RoleFFNDown // T5 DenseReluDense.wo
		}
		return RoleAttnOut
	case "gate":
		if w.f&fMLP != 0 {
			return RoleMoERouter
		}
		return RoleOther
	case "c_proj":
		if attn {
			return RoleAttnOut
		}
		if w.f&fMLP != 0 || in {
			return RoleFFNDown
		}
		return RoleDense
	case "out_proj":
		switch {
		case w.f&fMixer != 0:
			return RoleSSMOut
		case w.f&fHead != 0:
			return RoleHead // RoBERTa classifier.out_proj
		}
		return RoleAttnOut
	case "in_proj":
		if w.f&fMixer != 0 {
			return RoleSSMIn
		}
		return RoleAttnQKV // torch.nn.MultiheadAttention in_proj_weight
	case "conv1d":
		if w.f&fMixer != 0 {
			return RoleSSMConv
		}
		return RoleConv
	case "dense":
		switch {
		case attn:
			return RoleAttnOut // BERT attention.output.dense, NeoX attention.dense
		case w.f&fPooler != 0:
			return RolePooler
		case w.f&fHead != 0:
			return RoleHeadTransform
		case w.f&fInter != 0:
			return RoleFFNUp
		case in && w.f&fOut != 0:
			return RoleFFNDown
		}
		return RoleDense
	case "output", "out":
		switch {
		case attn:
			return RoleAttnOut
		case w.f&fMLP != 0:
			return RoleFFNDown
		case in:
			return RoleDense
		}
		return RoleHead
	case "proj", "projection":
		switch {
		case w.f&fPatch != 0:
			return RolePatchEmbed
		case attn:
			return RoleAttnOut // timm ViT attn.proj
		case parent == "0" || w.f&fMLP != 0:
			return RoleFFNGateUp // diffusers ff.net.0.proj (GEGLU)
		}
		return RoleDense
	case "fc1":
		if in || w.f&fMLP != 0 {
			return RoleFFNUp
		}
		return RoleDense
	case "fc2":
		if in || w.f&fMLP != 0 {
			return RoleFFNDown
		}
		return RoleDense
	case "fc":
		if in && w.f&fHead == 0 {
			return RoleDense
		}
		return RoleHead
	case "key":
		if w.f&fMLP != 0 {
			return RoleFFNUp // RWKV channel mix
		}
		return RoleAttnK
	case "value":
		if w.f&fMLP != 0 {
			return RoleFFNDown
		}
		return RoleAttnV
	case "linear":
		if w.f&fHead != 0 && !in {
			return RoleHead
		}
		if w.f&fTime != 0 {
			return RoleTimeEmbed
		}
		return RoleDense
	case "proj_out":
		if !in && w.f&(fEnc|fDec) == 0 && w.stack == "" {
			return RoleHead // Whisper proj_out
		}
		return RoleProjOut
	case "final_layer_norm":
		if in {
			return RoleFFNNorm // BART / Whisper per-block norm before the MLP
		}
		return RoleNorm
	case "norm1", "norm_1", "ln1", "ln_1", "layer_norm1":
		if w.f&fResnet != 0 || !in {
			return RoleNorm
		}
		return RoleAttnNorm
	case "norm2", "norm_2", "ln2", "ln_2", "layer_norm2":
		switch {
		case w.f&fResnet != 0 || !in:
			return RoleNorm
		case w.unet:
			return "xattn_norm" // diffusers BasicTransformerBlock: norm2 precedes attn2
		}
		return RoleFFNNorm
	case "norm3":
		if w.f&fResnet != 0 || !in {
			return RoleNorm
		}
		return RoleFFNNorm
	case "post_attention_layernorm":
		return RoleFFNNorm // llama; ClassifyAll turns it into attn_post_norm in gemma2-style blocks
	}
	if w.f&fTime != 0 && !isNormName(leaf) {
		return RoleTimeEmbed
	}
	if isNormName(leaf) {
		return w.norm()
	}
	// Generic layer names of plain networks: conv1, fc_2, dense_3, linear, l1, bn1, lstm.
	base := trimNum(leaf)
	switch {
	case strings.HasPrefix(base, "conv"), strings.HasPrefix(base, "Conv"):
		return RoleConv
	case genericDense[base]:
		return RoleDense
	case genericHead[base]:
		return RoleHead
	case genericEmbed[base]:
		return RoleEmbed
	case genericRNN[base]:
		return RoleRNN
	}
	return RoleOther
}

// isNormName reports whether a module name denotes a normalisation layer: it contains "norm"
// (any case) or is ln*/bn*/gn* (ln_f, bn1, ln_attn).
func isNormName(s string) bool {
	for i := 0; i+4 <= len(s); i++ {
		if (s[i]|0x20) == 'n' && (s[i+1]|0x20) == 'o' && (s[i+2]|0x20) == 'r' && (s[i+3]|0x20) == 'm' {
			return true
		}
	}
	if len(s) >= 2 && (s[0] == 'l' || s[0] == 'b' || s[0] == 'g') && s[1] == 'n' {
		return len(s) == 2 || s[2] == '_' || s[2] >= '0' && s[2] <= '9'
	}
	return false
}

// isResNetStage reports whether c is a ResNet stage name: "layer" followed by digits.
func isResNetStage(c string) bool {
	return len(c) > 5 && strings.HasPrefix(c, "layer") && isNum(c[5:])
}

func at(m []string, i int) string {
	if i >= 0 && i < len(m) {
		return m[i]
	}
	return ""
}

// isNum reports whether s is a non-empty string of at most 9 ASCII digits.
func isNum(s string) bool { return atoi(s) >= 0 }

// atoi parses a non-empty string of at most 9 ASCII digits; -1 otherwise.
func atoi(s string) int {
	if len(s) == 0 || len(s) > 9 {
		return -1
	}
	v := 0
	for i := 0; i < len(s); i++ {
		d := s[i] - '0'
		if d > 9 {
			return -1
		}
		v = 10*v + int(d)
	}
	return v
}

// trailingNum returns the number that ends s after a non-digit prefix (fc2 -> 2,
// dense_13 -> 13), or -1.
func trailingNum(s string) int {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == 0 || i == len(s) {
		return -1
	}
	return atoi(s[i:])
}

// trimNum strips a trailing number and the '_' before it: conv2d_3 -> conv2d, fc1 -> fc.
func trimNum(s string) string {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	if i == 0 {
		return s
	}
	if i < len(s) && s[i-1] == '_' {
		i--
	}
	return s[:i]
}
