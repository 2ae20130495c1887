package roles

// exact maps module names that mean the same thing wherever they appear to their base role.
// Names whose meaning depends on the context (dense, out_proj, w1, fc1, norm1, ...) are
// resolved in resolveNamed.
var exact = map[string]string{
	// Embeddings.
	"embed_tokens":              RoleEmbed, // HF
	"wte":                       RoleEmbed, // GPT-2
	"word_embeddings":           RoleEmbed, // BERT, bloom, falcon
	"tok_embeddings":            RoleEmbed, // Meta llama
	"token_embd":                RoleEmbed, // GGUF
	"embed_in":                  RoleEmbed, // GPT-NeoX
	"shared":                    RoleEmbed, // T5
	"token_embedding":           RoleEmbed, // CLIP
	"word_embedding":            RoleEmbed,
	"embeddings":                RoleEmbed, // mamba backbone.embeddings; Keras embedding/embeddings
	"wpe":                       RolePosEmbed,
	"position_embeddings":       RolePosEmbed,
	"position_embd":             RolePosEmbed,
	"embed_positions":           RolePosEmbed,
	"position_embedding":        RolePosEmbed,
	"pos_embed":                 RolePosEmbed,
	"pos_embedding":             RolePosEmbed,
	"positional_embedding":      RolePosEmbed,
	"absolute_pos_embed":        RolePosEmbed,
	"token_type_embeddings":     RoleTypeEmbed,
	"token_types":               RoleTypeEmbed,
	"token_embd_norm":           RoleEmbedNorm,
	"word_embeddings_layernorm": RoleEmbedNorm,
	"layernorm_embedding":       RoleEmbedNorm,
	"emb_ln":                    RoleEmbedNorm,
	"patch_embedding":           RolePatchEmbed,
	"patch_embd":                RolePatchEmbed,
	"cls_token":                 RoleClsToken,
	"class_embedding":           RoleClsToken,
	"class_embd":                RoleClsToken,
	"dist_token":                RoleClsToken,
	"mask_token":                RoleClsToken,
	"reg_token":                 RoleClsToken,
	"register_tokens":           RoleClsToken,

	// Attention.
	"q_proj":                  RoleAttnQ,
	"query":                   RoleAttnQ,
	"q_lin":                   RoleAttnQ,
	"wq":                      RoleAttnQ,
	"to_q":                    RoleAttnQ,
	"q":                       RoleAttnQ,
	"query_proj":              RoleAttnQ,
	"attn_q":                  RoleAttnQ,
	"k_proj":                  RoleAttnK,
	"k_lin":                   RoleAttnK,
	"wk":                      RoleAttnK,
	"to_k":                    RoleAttnK,
	"k":                       RoleAttnK,
	"key_proj":                RoleAttnK,
	"attn_k":                  RoleAttnK,
	"v_proj":                  RoleAttnV,
	"v_lin":                   RoleAttnV,
	"wv":                      RoleAttnV,
	"to_v":                    RoleAttnV,
	"v":                       RoleAttnV,
	"value_proj":              RoleAttnV,
	"attn_v":                  RoleAttnV,
	"qkv_proj":                RoleAttnQKV,
	"qkv":                     RoleAttnQKV,
	"c_attn":                  RoleAttnQKV,
	"query_key_value":         RoleAttnQKV,
	"W_pack":                  RoleAttnQKV,
	"wqkv":                    RoleAttnQKV, // InternLM2
	"att_proj":                RoleAttnQKV, // OLMo
	"Wqkv":                    RoleAttnQKV,
	"attn_qkv":                RoleAttnQKV,
	"o_proj":                  RoleAttnOut,
	"out_lin":                 RoleAttnOut,
	"o":                       RoleAttnOut,
	"to_out":                  RoleAttnOut,
	"attn_output":             RoleAttnOut,
	"attn_o":                  RoleAttnOut,
	"attn_out":                RoleAttnOut,
	"q_norm":                  RoleAttnQNorm,
	"attn_q_norm":             RoleAttnQNorm,
	"k_norm":                  RoleAttnKNorm,
	"attn_k_norm":             RoleAttnKNorm,
	"q_a_proj":                RoleAttnQA,
	"attn_q_a":                RoleAttnQA,
	"q_b_proj":                RoleAttnQB,
	"attn_q_b":                RoleAttnQB,
	"kv_a_proj_with_mqa":      RoleAttnKVA,
	"attn_kv_a_mqa":           RoleAttnKVA,
	"kv_b_proj":               RoleAttnKVB,
	"attn_kv_b":               RoleAttnKVB,
	"attn_k_b":                RoleAttnKB,
	"attn_v_b":                RoleAttnVB,
	"q_a_layernorm":           RoleAttnQANorm,
	"attn_q_a_norm":           RoleAttnQANorm,
	"kv_a_layernorm":          RoleAttnKVANorm,
	"attn_kv_a_norm":          RoleAttnKVANorm,
	"sinks":                   RoleAttnSinks,
	"attn_sinks":              RoleAttnSinks,
	"relative_attention_bias": RoleRelPosBias,
	"attn_rel_b":              RoleRelPosBias,
	"rotary_emb":              RoleRopeFreqs,
	"rope_freqs":              RoleRopeFreqs,
	"attn_rot_embd":           RoleRopeFreqs,
	"rope_factors_long":       RoleRopeFreqs,
	"rope_factors_short":      RoleRopeFreqs,

	// Cross-attention (GGUF T5 decoder, BART).
	"cross_attn_q":            "xattn_q",
	"cross_attn_k":            "xattn_k",
	"cross_attn_v":            "xattn_v",
	"cross_attn_o":            "xattn_out",
	"cross_attn_norm":         "xattn_norm",
	"cross_attn_rel_b":        "xattn_rel_pos_bias",
	"encoder_attn_layer_norm": "xattn_norm",

	// Norms in a block.
	"input_layernorm":            RoleAttnNorm,
	"ln_attn":                    RoleAttnNorm,
	"attention_norm":             RoleAttnNorm,
	"layernorm_before":           RoleAttnNorm,
	"self_attn_layer_norm":       RoleAttnNorm,
	"sa_layer_norm":              RoleAttnNorm,
	"attn_norm":                  RoleAttnNorm,
	"attn_output_norm":           RoleAttnNorm, // GGUF BERT (post-norm)
	"ln_mlp":                     RoleFFNNorm,
	"ffn_norm":                   RoleFFNNorm,
	"layernorm_after":            RoleFFNNorm,
	"output_layer_norm":          RoleFFNNorm,
	"pre_feedforward_layernorm":  RoleFFNNorm,
	"attn_norm_2":                RoleFFNNorm, // falcon-40b GGUF (ln_mlp)
	"layer_output_norm":          RoleFFNNorm, // GGUF BERT
	"ffn_norm_exps":              RoleFFNNorm,
	"post_feedforward_layernorm": RoleFFNPostNorm,
	"post_ffw_norm":              RoleFFNPostNorm,
	"ffn_post_norm":              RoleFFNPostNorm,
	"post_attention_norm":        RoleAttnPostNorm,
	"attn_post_norm":             RoleAttnPostNorm,
	"ssm_norm":                   RoleSSMNorm,

	// MLP.
	"c_fc":          RoleFFNUp,
	"fc_in":         RoleFFNUp,
	"dense_h_to_4h": RoleFFNUp,
	"wi":            RoleFFNUp,
	"wi_0":          RoleFFNGate,
	"wi_1":          RoleFFNUp,
	"lin1":          RoleFFNUp,
	"fc_out":        RoleFFNDown,
	"dense_4h_to_h": RoleFFNDown,
	"lin2":          RoleFFNDown,
	"ff_proj":       RoleFFNGateUp, // OLMo
	"ffn_gate":      RoleFFNGate,
	"ffn_up":        RoleFFNUp,
	"ffn_down":      RoleFFNDown,
	"ffn_gate_up":   RoleFFNGateUp,

	// Mixture of experts.
	"router":             RoleMoERouter,
	"ffn_gate_inp":       RoleMoERouter,
	"exp_probs_b":        RoleMoERouter,
	"ffn_gate_exps":      RoleExpertGate,
	"ffn_up_exps":        RoleExpertUp,
	"ffn_down_exps":      RoleExpertDown,
	"ffn_gate_up_exps":   RoleExpertGateUp,
	"shared_expert_gate": RoleShexpRouter,
	"ffn_gate_inp_shexp": RoleShexpRouter,
	"ffn_gate_shexp":     RoleShexpGate,
	"ffn_up_shexp":       RoleShexpUp,
	"ffn_down_shexp":     RoleShexpDown,

	// State-space models.
	"ssm_in":     RoleSSMIn,
	"ssm_conv1d": RoleSSMConv,
	"ssm_x":      RoleSSMX,
	"x_proj":     RoleSSMX,
	"ssm_dt":     RoleSSMDt,
	"dt_proj":    RoleSSMDt,
	"ssm_a":      RoleSSMA,
	"A_log":      RoleSSMA,
	"ssm_d":      RoleSSMD,
	"D":          RoleSSMD,
	"ssm_out":    RoleSSMOut,

	// Heads and other top-level modules.
	"lm_head":           RoleHead,
	"embed_out":         RoleHead, // GPT-NeoX
	"output_layer":      RoleHead, // ChatGLM
	"classifier":        RoleHead,
	"score":             RoleHead, // HF *ForSequenceClassification
	"head":              RoleHead, // timm
	"logits":            RoleHead,
	"predictions":       RoleHead, // Keras applications; BERT cls.predictions.bias
	"qa_outputs":        RoleHead,
	"seq_relationship":  RoleHead,
	"decoder":           RoleHead, // BERT cls.predictions.decoder, RoBERTa lm_head.decoder
	"cls":               RoleHead, // GGUF BERT classifier
	"pre_classifier":    RoleHeadTransform,
	"pooler":            RolePooler,
	"proj_in":           RoleProjIn,
	"text_projection":   RoleProjOut,
	"visual_projection": RoleProjOut,
	"time_emb_proj":     RoleTimeEmbed,
	"ls1":               RoleLayerScale,
	"ls2":               RoleLayerScale,
	"layer_scale":       RoleLayerScale,
	"layer_scale1":      RoleLayerScale,
	"layer_scale2":      RoleLayerScale,
	"gamma_1":           RoleLayerScale,
	"gamma_2":           RoleLayerScale,
	"output_norm":       RoleNorm,
}

// ctxFlags gives the context a (non-leaf) path component establishes.
var ctxFlags = map[string]flag{
	"attn":                  fAttn,
	"self_attn":             fAttn,
	"attention":             fAttn,
	"self_attention":        fAttn,
	"SelfAttention":         fAttn,
	"self":                  fAttn, // BERT attention.self
	"attn1":                 fAttn,
	"att":                   fAttn, // RWKV
	"img_attn":              fAttn,
	"txt_attn":              fAttn,
	"encoder_attn":          fCross,
	"EncDecAttention":       fCross,
	"crossattention":        fCross,
	"cross_attn":            fCross,
	"cross_attention":       fCross,
	"attn2":                 fCross,
	"mlp":                   fMLP,
	"feed_forward":          fMLP,
	"ffn":                   fMLP,
	"DenseReluDense":        fMLP,
	"ff":                    fMLP,
	"block_sparse_moe":      fMLP,
	"moe":                   fMLP,
	"feedforward":           fMLP,
	"img_mlp":               fMLP,
	"txt_mlp":               fMLP,
	"experts":               fExperts,
	"shared_expert":         fShexp,
	"shared_experts":        fShexp,
	"lm_head":               fHead,
	"cls":                   fHead,
	"classifier":            fHead,
	"head":                  fHead,
	"score":                 fHead,
	"predictions":           fHead,
	"classification_head":   fHead,
	"pooler":                fPooler,
	"embeddings":            fEmb,
	"embedding":             fEmb,
	"output":                fOut,
	"intermediate":          fInter,
	"resnets":               fResnet,
	"patch_embed":           fPatch,
	"patch_embeddings":      fPatch,
	"patch_embedding":       fPatch,
	"mixer":                 fMixer,
	"time_embedding":        fTime,
	"time_embed":            fTime,
	"add_embedding":         fTime,
	"encoder":               fEnc,
	"decoder":               fDec,
	"vision_tower":          fVis,
	"vision_model":          fVis,
	"visual":                fVis,
	"vision_encoder":        fVis,
	"image_encoder":         fVis,
	"vpm":                   fVis,
	"audio_tower":           fAud,
	"audio_model":           fAud,
	"audio_encoder":         fAud,
	"multi_modal_projector": fMM,
	"mm_projector":          fMM,
	"merger":                fMM,
}

// stackContainers hold numbered blocks: <container>.N.
var stackContainers = map[string]bool{
	"layers":                    true,
	"layer":                     true,
	"h":                         true,
	"blk":                       true,
	"blocks":                    true,
	"block":                     true,
	"resblocks":                 true,
	"stages":                    true,
	"transformer_blocks":        true,
	"single_transformer_blocks": true,
	"double_blocks":             true,
	"single_blocks":             true,
}

// seqContainers are Sequential modules whose entries say nothing by their parent's name.
var seqContainers = map[string]bool{
	"features":   true,
	"net":        true,
	"model":      true,
	"main":       true,
	"body":       true,
	"seq":        true,
	"sequential": true,
	"downsample": true,
	"shortcut":   true,
	"stem":       true,
	"mlp":        true,
	"ffn":        true,
}

// Generic layer names of plain networks, compared after trimNum.
var (
	genericDense = map[string]bool{"fc": true, "dense": true, "linear": true, "lin": true, "l": true, "ip": true, "hidden": true, "fully_connected": true, "Dense": true, "Linear": true}
	genericHead  = map[string]bool{"out": true, "output": true, "logits": true, "predictions": true, "classifier": true, "head": true}
	genericEmbed = map[string]bool{"embedding": true, "embed": true, "emb": true, "Embed": true}
	genericRNN   = map[string]bool{"lstm": true, "gru": true, "rnn": true, "simple_rnn": true, "lstm_cell": true, "gru_cell": true, "bidirectional": true}
)

// kerasBases are Keras's automatic layer names; the first layer of a type has no _N suffix.
var kerasBases = map[string]bool{
	"dense": true, "conv1d": true, "conv2d": true, "conv3d": true, "conv2d_transpose": true,
	"depthwise_conv2d": true, "separable_conv2d": true, "batch_normalization": true,
	"layer_normalization": true, "embedding": true, "lstm": true, "gru": true, "simple_rnn": true,
}

// Quantization parameters.
var (
	quantParams = map[string]bool{
		"absmax": true, "quant_map": true, "nested_absmax": true, "nested_quant_map": true,
		"SCB": true, "weight_format": true, "qweight": true, "qzeros": true, "scales": true,
		"g_idx": true, "zeros": true, "W_q": true, "meta": true,
	}
	// quantSuffixes end a parameter name that is quantization data: weight_scale_inv,
	// gate_up_proj_blocks. Order matters: longer first where one ends another.
	quantSuffixes = []string{"_scale_inv", "_scales", "_scale", "_blocks", "_zero_point", "_packed", "_g_idx", "_shape", "_global_scale"}
	// quantBases are the prefixes that name a parameter of the module (weight_scale), not a
	// module (gate_up_proj_blocks).
	quantBases = map[string]bool{"weight": true, "input": true, "output": true, "k": true, "v": true, "q": true}
	// kvScaleRoles are the roles of attention-cache scales named q_scale, k_scale, v_scale.
	kvScaleRoles = map[string]string{"q": RoleAttnQ, "k": RoleAttnK, "v": RoleAttnV}
)

// wrappers are path components inserted by wrappers around modules.
var wrappers = map[string]bool{"base_layer": true, "modules_to_save": true, "original_module": true, "_orig_mod": true, "_fsdp_wrapped_module": true, "_checkpoint_wrapped_module": true}

// kohyaPrefixes start kohya-ss LoRA tensor names; the module path follows with '_' for '.'.
var kohyaPrefixes = []string{"lora_unet_", "lora_te1_", "lora_te2_", "lora_te3_", "lora_te_", "lora_transformer_"}

// kohyaCompounds are module names that contain '_' and must be joined again when splitting a
// kohya name.
var kohyaCompounds = map[string]bool{
	"down_blocks": true, "up_blocks": true, "mid_block": true, "transformer_blocks": true,
	"single_transformer_blocks": true, "double_blocks": true, "single_blocks": true,
	"text_model": true, "self_attn": true, "q_proj": true, "k_proj": true, "v_proj": true,
	"o_proj": true, "out_proj": true, "to_q": true, "to_k": true, "to_v": true, "to_out": true,
	"proj_in": true, "proj_out": true, "time_emb_proj": true, "conv_shortcut": true,
	"conv_in": true, "conv_out": true, "img_attn": true, "txt_attn": true, "img_mlp": true,
	"txt_mlp": true, "gate_proj": true, "up_proj": true, "down_proj": true,
	"layer_norm1": true, "layer_norm2": true, "final_layer_norm": true,
	"token_embedding": true, "position_embedding": true, "input_layernorm": true,
	"post_attention_layernorm": true, "embed_tokens": true, "lm_head": true,
	"time_embedding": true, "text_projection": true, "add_embedding": true,
	"self_attention": true, "query_key_value": true, "dense_h_to_4h": true, "dense_4h_to_h": true,
	"c_attn": true, "c_proj": true, "c_fc": true, "fc1": true, "fc2": true,
}

// Prefixed role names, built once so that Classify does not allocate.
var (
	decRoles, visRoles, audRoles, crossRoles, unCross map[string]string
)

func init() {
	all := []string{
		RoleEmbed, RolePosEmbed, RoleTypeEmbed, RoleEmbedNorm, RolePatchEmbed, RoleClsToken,
		RoleAttnQ, RoleAttnK, RoleAttnV, RoleAttnQKV, RoleAttnOut, RoleAttnNorm, RoleAttnPostNorm,
		RoleAttnQNorm, RoleAttnKNorm, RoleAttnQA, RoleAttnQB, RoleAttnKVA, RoleAttnKVB, RoleAttnKB,
		RoleAttnVB, RoleAttnQANorm, RoleAttnKVANorm, RoleAttnSinks, RoleAttnMask, RoleRelPosBias,
		RoleFFNGate, RoleFFNUp, RoleFFNDown, RoleFFNGateUp, RoleFFNNorm, RoleFFNPostNorm,
		RoleMoERouter, RoleExpertGate, RoleExpertUp, RoleExpertDown, RoleExpertGateUp,
		RoleShexpRouter, RoleShexpGate, RoleShexpUp, RoleShexpDown,
		RoleSSMIn, RoleSSMConv, RoleSSMX, RoleSSMDt, RoleSSMA, RoleSSMD, RoleSSMOut, RoleSSMNorm,
		RoleNorm, RoleHead, RoleHeadTransform, RolePooler, RoleConv, RoleDense, RoleRNN,
		RoleLayerScale, RoleProjIn, RoleProjOut, RoleTimeEmbed, RoleMMProj, RoleRopeFreqs,
		"xattn_q", "xattn_k", "xattn_v", "xattn_out", "xattn_norm", "xattn_rel_pos_bias",
	}
	decRoles = make(map[string]string, len(all))
	visRoles = make(map[string]string, len(all))
	audRoles = make(map[string]string, len(all))
	crossRoles = make(map[string]string)
	unCross = make(map[string]string)
	for _, r := range all {
		decRoles[r] = "dec_" + r
		visRoles[r] = "vis_" + r
		audRoles[r] = "aud_" + r
		if len(r) > 5 && r[:5] == "attn_" {
			crossRoles[r] = "x" + r
			unCross["x"+r] = r
		}
	}
	unCross["xattn_rel_pos_bias"] = RoleRelPosBias
}
