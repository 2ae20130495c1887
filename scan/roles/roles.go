// Package roles places tensors in their architecture: from a tensor's name (and, where the
// name is not enough, its shape) it derives the numbered block the tensor belongs to, a
// normalised role shared across naming conventions, and what kind of parameter it is.
//
// Statistics over weights only make sense when they compare like with like: the MLP down
// projection of block 3 with the MLP down projections of the other blocks, not with an
// embedding or a norm. The same matrix is called model.layers.3.mlp.down_proj.weight in a
// Hugging Face llama checkpoint, blk.3.ffn_down.weight in its GGUF conversion,
// transformer.h.3.mlp.c_proj.weight in GPT-2 and encoder.layer.3.output.dense.weight in BERT;
// Classify maps all of them to Role{Layer: 3, Role: "ffn_down", Kind: "weight"}.
//
// # Conventions covered
//
// Hugging Face transformers (llama, mistral, qwen, gemma, phi, mixtral and other MoE,
// deepseek MLA, GPT-2, GPT-J, GPT-NeoX, falcon, bloom, MPT, OPT, BERT, RoBERTa, DistilBERT,
// T5, BART, Whisper, CLIP, ViT, mamba, multimodal wrappers), llama.cpp GGUF names, timm and
// torchvision CNNs and ViTs, Keras (layer/kernel:0), plain PyTorch state dicts, diffusers
// UNets, and adapters: PEFT LoRA, diffusers LoRA (old attention-processor and new formats)
// and kohya-ss LoRA (lora_unet_..., lora_te_...).
//
// # Roles
//
// Roles are the constants below (RoleEmbed, RoleAttnQ, ...). Four prefixes keep apart
// parts of a model that must not be compared with each other:
//
//   - "dec_": a tensor in a numbered block of the decoder of an encoder-decoder model
//     (T5, BART, Whisper): "dec_attn_q", "dec_ffn_down", "dec_attn_norm". The encoder's
//     blocks use the plain roles. Embeddings, final norms and heads are not prefixed.
//   - "xattn_": cross-attention (the decoder attending to the encoder, T5 EncDecAttention,
//     BART encoder_attn, diffusers attn2): "xattn_q", "xattn_k", "xattn_v", "xattn_out",
//     "xattn_norm". Cross-attention is never also prefixed with "dec_".
//   - "vis_": anything inside a vision tower of a multimodal model or CLIP (vision_tower,
//     vision_model, visual, GGUF mmproj v.*): "vis_attn_q", "vis_patch_embed", ...
//   - "aud_": anything inside an audio tower (audio_tower, GGUF a.*).
//
// Base strips these prefixes ("xattn_q" becomes "attn_q").
//
// Role is RoleOther when the name is not recognised; it is never empty.
//
// # Layers
//
// Layer is the index of the numbered block (llama layers.N, GGUF blk.N, GPT-2 h.N, BERT
// layer.N, T5 block.N, ViT blocks.N), or -1 for tensors outside numbered blocks (embeddings,
// final norm, head). Where blocks nest, Classify combines the indices into one key that keeps
// the forward order and is unique per block:
//
//   - two levels (torchvision/timm ResNet layerS.B, timm stages.S.blocks.B, Swin
//     layers.S.blocks.B, EfficientNet blocks.S.B): 100*S + B, so layer3.5 is 305;
//   - diffusers UNet: down_blocks.S -> 100*S, mid_block -> 500, up_blocks.S -> 600 + 100*S,
//     plus 10*A for attentions.A / resnets.A and T for transformer_blocks.T (A, T < 10).
//
// These keys are sparse. ClassifyAll, which sees the whole model, renumbers them densely in
// forward order (ResNet-50's 16 bottleneck blocks become layers 0..15).
//
// Names without any known block container fall back to a number in the name: the first path
// component that is a number or ends in one ("net.3.weight" -> 3, "fc2.weight" -> 2,
// "conv1.0.weight" -> 1, "mel_80" -> 80). For Keras names (layer/kernel:0) the number is taken
// from the layer's own name instead, following Keras's per-type counters: "dense" is 0,
// "dense_1" 1, "conv2d_3" 3 (so a Dense and a Conv2D may share a layer number; their roles
// differ). Consequently plain multi-layer perceptrons number their layers fc1 = 1, fc2 = 2.
//
// (Layer, Role) is not unique: the experts of a mixture-of-experts block share both, as do
// the two 1x1 convolutions of a ResNet bottleneck block.
//
// # Kinds
//
// Kind is KindWeight, KindBias, KindNorm (every parameter and running statistic of a
// normalisation layer, weight and bias alike), KindScale (quantization data that is not a
// float weight: *_scale_inv, weight_scale, *_scales, *_blocks, qweight, qzeros, g_idx,
// bitsandbytes absmax / quant_map), KindLoRAA / KindLoRAB (the two factors of a low-rank
// adapter; see below) or KindOther (buffers such as rotary frequencies and attention masks,
// adapter alphas, and unnamed vectors).
//
// # Adapters
//
// A LoRA factor keeps the role and layer of the weight it adapts and says which factor it is
// in Kind: base_model.model.transformer.h.0.attn.c_attn.lora_A.weight is
// Role{Layer: 0, Role: "attn_qkv", Kind: "lora_a"}. lora_A, lora_down and .down are
// KindLoRAA (rank x in); lora_B, lora_up and .up are KindLoRAB (out x rank).
package roles

import (
	"slices"
	"strings"
)

// Role places a tensor in its architecture.
type Role struct {
	Layer int    // block index, -1 when the tensor belongs to no numbered block
	Role  string // normalised role (RoleAttnQ, ...), RoleOther when unknown
	Kind  string // KindWeight, KindBias, KindNorm, KindScale, KindLoRAA, KindLoRAB, KindOther
}

// Kinds of parameter.
const (
	KindWeight = "weight" // a weight matrix, convolution kernel or embedding table
	KindBias   = "bias"   // an additive bias (not of a norm)
	KindNorm   = "norm"   // any parameter or running statistic of a normalisation layer
	KindScale  = "scale"  // quantization data: scales, zero points, packed blocks, g_idx
	KindLoRAA  = "lora_a" // LoRA down factor A (rank x in)
	KindLoRAB  = "lora_b" // LoRA up factor B (out x rank)
	KindOther  = "other"  // buffers, scalars and anything else
)

// Normalised roles. Prefixed variants ("dec_", "xattn_", "vis_", "aud_") are described in the
// package documentation.
const (
	RoleEmbed      = "embed"       // token embedding table
	RolePosEmbed   = "pos_embed"   // learned absolute position embeddings (and position_ids)
	RoleTypeEmbed  = "type_embed"  // token type / segment embeddings (BERT)
	RoleEmbedNorm  = "embed_norm"  // norm applied to the embeddings (BERT embeddings.LayerNorm)
	RolePatchEmbed = "patch_embed" // image patch embedding (ViT patch_embed.proj)
	RoleClsToken   = "cls_token"   // learned special-token vectors: cls, distillation, mask, register

	RoleAttnQ        = "attn_q"         // attention query projection
	RoleAttnK        = "attn_k"         // attention key projection
	RoleAttnV        = "attn_v"         // attention value projection
	RoleAttnQKV      = "attn_qkv"       // fused query/key/value projection (c_attn, qkv_proj, Wqkv)
	RoleAttnOut      = "attn_out"       // attention output projection (o_proj, c_proj, attn_output)
	RoleAttnNorm     = "attn_norm"      // norm before (or, post-norm models, after) attention
	RoleAttnPostNorm = "attn_post_norm" // norm on the attention output (gemma2 post_attention_norm)
	RoleAttnQNorm    = "attn_q_norm"    // per-head query norm (qwen3, olmo2)
	RoleAttnKNorm    = "attn_k_norm"    // per-head key norm
	RoleAttnQA       = "attn_q_a"       // MLA query down projection (deepseek q_a_proj)
	RoleAttnQB       = "attn_q_b"       // MLA query up projection
	RoleAttnKVA      = "attn_kv_a"      // MLA key/value down projection (kv_a_proj_with_mqa)
	RoleAttnKVB      = "attn_kv_b"      // MLA key/value up projection
	RoleAttnKB       = "attn_k_b"       // MLA key up projection (llama.cpp split of kv_b)
	RoleAttnVB       = "attn_v_b"       // MLA value up projection
	RoleAttnQANorm   = "attn_q_a_norm"  // MLA query latent norm
	RoleAttnKVANorm  = "attn_kv_a_norm" // MLA key/value latent norm
	RoleAttnSinks    = "attn_sinks"     // learned attention sinks (gpt-oss)
	RoleAttnMask     = "attn_mask"      // causal mask buffer stored as a tensor (GPT-2 attn.bias)
	RoleRelPosBias   = "rel_pos_bias"   // relative position bias table (T5)

	RoleFFNGate     = "ffn_gate"      // gated MLP gate projection
	RoleFFNUp       = "ffn_up"        // MLP up projection (the first Linear of a plain MLP)
	RoleFFNDown     = "ffn_down"      // MLP down projection (the last Linear of the MLP)
	RoleFFNGateUp   = "ffn_gate_up"   // fused gate and up projection (phi3 gate_up_proj, GEGLU)
	RoleFFNNorm     = "ffn_norm"      // norm before (post-norm: after) the MLP
	RoleFFNPostNorm = "ffn_post_norm" // norm on the MLP output (gemma2 post_feedforward_layernorm)

	RoleMoERouter    = "moe_router"     // mixture-of-experts router (gate, ffn_gate_inp)
	RoleExpertGate   = "expert_gate"    // an expert's gate projection
	RoleExpertUp     = "expert_up"      // an expert's up projection
	RoleExpertDown   = "expert_down"    // an expert's down projection
	RoleExpertGateUp = "expert_gate_up" // an expert's fused gate and up projection
	RoleShexpRouter  = "shexp_router"   // gate of the shared expert (qwen2moe shared_expert_gate)
	RoleShexpGate    = "shexp_gate"     // shared expert's gate projection
	RoleShexpUp      = "shexp_up"       // shared expert's up projection
	RoleShexpDown    = "shexp_down"     // shared expert's down projection

	RoleSSMIn   = "ssm_in"   // state-space (mamba) input projection
	RoleSSMConv = "ssm_conv" // state-space depthwise convolution
	RoleSSMX    = "ssm_x"    // state-space x projection
	RoleSSMDt   = "ssm_dt"   // state-space dt projection
	RoleSSMA    = "ssm_a"    // state-space A (A_log)
	RoleSSMD    = "ssm_d"    // state-space D
	RoleSSMOut  = "ssm_out"  // state-space output projection
	RoleSSMNorm = "ssm_norm" // state-space inner norm

	RoleNorm          = "norm"           // any other norm: final norm, CNN batch norms, in-block norms of unknown position
	RoleHead          = "head"           // output layer: lm_head, GGUF output, classifier, fc, score
	RoleHeadTransform = "head_transform" // dense layer inside a head before the output (cls.predictions.transform.dense)
	RolePooler        = "pooler"         // BERT pooler dense layer
	RoleConv          = "conv"           // a convolution kernel
	RoleDense         = "dense"          // a generic Linear / Keras Dense outside transformer blocks
	RoleRNN           = "rnn"            // recurrent layer parameters (LSTM, GRU)
	RoleLayerScale    = "layer_scale"    // per-channel residual scale (timm ls1.gamma, ConvNeXt gamma)
	RoleProjIn        = "proj_in"        // input projection of a diffusers transformer
	RoleProjOut       = "proj_out"       // output projection (diffusers proj_out, CLIP text/visual_projection)
	RoleTimeEmbed     = "time_embed"     // diffusion timestep embedding layers
	RoleMMProj        = "mm_proj"        // multimodal projector between a vision tower and the language model
	RoleRopeFreqs     = "rope_freqs"     // rotary frequency buffers (rope_freqs, inv_freq)
	RoleOther         = "other"          // not recognised
)

// Classify maps a tensor name and its row-major shape (which may be nil) to its Role. It
// never panics, allocates nothing for ordinary names and is safe for concurrent use.
func Classify(name string, shape []int64) Role {
	r, _ := classify(name, shape)
	return r
}

// ClassifyAll classifies the tensors of one model: names[i] with shapes[i] (shapes may be nil
// or shorter than names). Seeing every name lets it settle what a single name cannot:
//
//   - nested block keys (ResNet, UNet, ConvNeXt; see the package documentation) are renumbered
//     densely in forward order, and tensors outside those blocks get -1;
//   - "decoder.layers" stacks keep the "dec_" prefix only when the model also has an encoder
//     stack (BART, Whisper); in a decoder-only model (OPT, XGLM) the roles are plain;
//   - gemma2-style blocks with pre_feedforward_layernorm get RoleAttnPostNorm for
//     post_attention_layernorm (in llama-style blocks that norm is RoleFFNNorm);
//   - a bias or running statistic whose module is only known from its sibling weight
//     (features.1.bias of a torchvision VGG) takes the weight's role;
//   - the tensor FindHead picks (and its bias) gets RoleHead.
func ClassifyAll(names []string, shapes [][]int64) []Role {
	out, _ := classifyAll(names, shapes)
	return out
}

// FindHead returns the index in names of the weight of the model's final output layer (the
// classifier or language-model head), or -1 when there is none. An explicitly named head
// (lm_head, output, classifier, score, fc, head, out, logits, predictions) wins; otherwise the
// last generic dense layer outside transformer blocks (fc3 in fc1..fc3, dense_2 in Keras,
// classifier.6 in a torchvision VGG) is taken, ordered by layer number, not by name. Heads
// inside vision and audio towers are ignored. A language model whose head is tied to the
// token embedding has no head of its own.
func FindHead(names []string, shapes [][]int64) int {
	_, h := classifyAll(names, shapes)
	return h
}

// IsHeadCandidate reports whether name is the weight of a layer that may be the model's
// final output layer: an explicitly named head (lm_head, output, classifier, score, fc, head,
// out, logits, predictions, ...) or a generic dense layer outside transformer blocks, which is
// the head when it is the last one. FindHead picks among the candidates of a whole model.
func IsHeadCandidate(name string) bool {
	r, inf := classify(name, nil)
	if r.Kind != KindWeight {
		return false
	}
	return r.Role == RoleHead || r.Role == RoleDense && inf.headable()
}

// Base returns role without the "dec_", "vis_" and "aud_" prefixes, and with "xattn_" turned
// into "attn_": Base("dec_ffn_down") is "ffn_down", Base("xattn_q") is "attn_q".
func Base(role string) string {
	for {
		switch {
		case strings.HasPrefix(role, "dec_"), strings.HasPrefix(role, "vis_"), strings.HasPrefix(role, "aud_"):
			role = role[4:]
		case strings.HasPrefix(role, "xattn_"):
			if b, ok := unCross[role]; ok {
				return b
			}
			return "attn_" + role[6:]
		default:
			return role
		}
	}
}

// classifyAll is ClassifyAll that also returns FindHead's answer.
func classifyAll(names []string, shapes [][]int64) ([]Role, int) {
	out := make([]Role, len(names))
	infos := make([]info, len(names))
	shapeAt := func(i int) []int64 {
		if i < len(shapes) {
			return shapes[i]
		}
		return nil
	}
	var hasEncStack, hasDecGuess, hasPreFFNorm, hasComposite bool
	for i, n := range names {
		out[i], infos[i] = classify(n, shapeAt(i))
		inf := &infos[i]
		hasEncStack = hasEncStack || inf.encStack
		hasDecGuess = hasDecGuess || inf.decGuess
		hasPreFFNorm = hasPreFFNorm || inf.leaf == "pre_feedforward_layernorm"
		hasComposite = hasComposite || inf.src == srcComposite
	}

	// Decoder-only models named decoder.layers.N (OPT): no encoder, so no "dec_".
	if hasDecGuess && !hasEncStack {
		for i := range out {
			if infos[i].decGuess {
				out[i].Role = strings.TrimPrefix(out[i].Role, "dec_")
			}
		}
	}
	// Gemma2-style blocks: post_attention_layernorm is a post-norm, the FFN norm is
	// pre_feedforward_layernorm.
	if hasPreFFNorm {
		for i := range out {
			if infos[i].leaf == "post_attention_layernorm" {
				out[i].Role = withSamePrefix(out[i].Role, RoleFFNNorm, RoleAttnPostNorm)
			}
		}
	}
	// Biases and statistics of Sequential entries take the role of their sibling weight.
	var module map[string]int
	for i := range out {
		if !infos[i].unresolved {
			continue
		}
		if module == nil {
			module = make(map[string]int)
			for j := range out {
				if !infos[j].unresolved && out[j].Role != RoleOther && out[j].Kind != KindLoRAA && out[j].Kind != KindLoRAB {
					module[modulePrefix(names[j])] = j
				}
			}
		}
		if j, ok := module[modulePrefix(names[i])]; ok {
			out[i].Role = out[j].Role
			if isNormRole(out[i].Role) {
				out[i].Kind = KindNorm
			}
		}
	}
	// Nested blocks: dense ranks in forward order.
	if hasComposite {
		var keys []int
		for i := range out {
			if infos[i].src == srcComposite {
				keys = append(keys, out[i].Layer)
			}
		}
		slices.Sort(keys)
		keys = slices.Compact(keys)
		for i := range out {
			switch infos[i].src {
			case srcComposite:
				out[i].Layer, _ = slices.BinarySearch(keys, out[i].Layer)
			case srcFallback:
				out[i].Layer = -1
			}
		}
	}
	h := findHead(out, infos, shapes)
	if h >= 0 && out[h].Role != RoleHead {
		prefix, was := modulePrefix(names[h]), out[h].Role
		for i := range out {
			if (i == h || out[i].Kind == KindBias && modulePrefix(names[i]) == prefix) && out[i].Role == was {
				out[i].Role = RoleHead
			}
		}
	}
	return out, h
}

// findHead implements FindHead over classified tensors.
func findHead(out []Role, infos []info, shapes [][]int64) int {
	twoD := func(i int) bool { return i >= len(shapes) || shapes[i] == nil || len(shapes[i]) == 2 }
	best := -1
	for i, r := range out {
		if r.Role != RoleHead || r.Kind != KindWeight || !twoD(i) {
			continue
		}
		// The next-sentence head of a BERT pretraining checkpoint yields to the LM head.
		if best < 0 || infos[best].leaf == "seq_relationship" && infos[i].leaf != "seq_relationship" {
			best = i
		}
	}
	if best >= 0 {
		return best
	}
	for i, r := range out {
		if r.Role != RoleDense || r.Kind != KindWeight || !infos[i].headable() || !twoD(i) {
			continue
		}
		if best < 0 || r.Layer >= out[best].Layer {
			best = i
		}
	}
	return best
}

// modulePrefix is name without its last path component (the parameter name).
func modulePrefix(name string) string {
	if i := strings.LastIndexByte(name, ':'); i >= 0 && isNum(name[i+1:]) {
		name = name[:i]
	}
	if i := strings.LastIndexAny(name, "./"); i >= 0 {
		return name[:i]
	}
	return ""
}

// withSamePrefix replaces base role from with to, keeping a "dec_"/"vis_"/"aud_" prefix.
func withSamePrefix(role, from, to string) string {
	for _, p := range [...]string{"", "dec_", "vis_", "aud_"} {
		if role == p+from {
			return p + to
		}
	}
	return role
}

func isNormRole(role string) bool { return strings.HasSuffix(role, "norm") }
