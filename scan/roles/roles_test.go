package roles

import (
	"encoding/json"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Shapes used by the table; nil where the name alone decides.
var (
	s1 = []int64{64}
	s2 = []int64{64, 64}
	s4 = []int64{64, 64, 3, 3}
)

// classifyTests are real tensor names from every supported convention.
var classifyTests = []struct {
	name  string
	shape []int64
	want  Role
}{
	// Hugging Face llama / mistral / qwen2 / gemma.
	{"model.embed_tokens.weight", s2, Role{-1, "embed", "weight"}},
	{"model.layers.0.self_attn.q_proj.weight", s2, Role{0, "attn_q", "weight"}},
	{"model.layers.0.self_attn.k_proj.weight", s2, Role{0, "attn_k", "weight"}},
	{"model.layers.0.self_attn.v_proj.weight", s2, Role{0, "attn_v", "weight"}},
	{"model.layers.0.self_attn.o_proj.weight", s2, Role{0, "attn_out", "weight"}},
	{"model.layers.27.self_attn.q_proj.bias", s1, Role{27, "attn_q", "bias"}},
	{"model.layers.3.mlp.gate_proj.weight", s2, Role{3, "ffn_gate", "weight"}},
	{"model.layers.3.mlp.up_proj.weight", s2, Role{3, "ffn_up", "weight"}},
	{"model.layers.3.mlp.down_proj.weight", s2, Role{3, "ffn_down", "weight"}},
	{"model.layers.3.input_layernorm.weight", s1, Role{3, "attn_norm", "norm"}},
	{"model.layers.3.post_attention_layernorm.weight", s1, Role{3, "ffn_norm", "norm"}},
	{"model.layers.5.pre_feedforward_layernorm.weight", s1, Role{5, "ffn_norm", "norm"}},
	{"model.layers.5.post_feedforward_layernorm.weight", s1, Role{5, "ffn_post_norm", "norm"}},
	{"model.layers.5.self_attn.q_norm.weight", s1, Role{5, "attn_q_norm", "norm"}},
	{"model.layers.5.self_attn.k_norm.weight", s1, Role{5, "attn_k_norm", "norm"}},
	{"model.layers.0.self_attn.rotary_emb.inv_freq", s1, Role{0, "rope_freqs", "other"}},
	{"model.norm.weight", s1, Role{-1, "norm", "norm"}},
	{"lm_head.weight", s2, Role{-1, "head", "weight"}},
	{"model.language_model.layers.3.self_attn.q_proj.weight", s2, Role{3, "attn_q", "weight"}},
	{"language_model.model.layers.3.mlp.down_proj.weight", s2, Role{3, "ffn_down", "weight"}},
	{"language_model.model.embed_tokens.weight", s2, Role{-1, "embed", "weight"}},
	// phi3 fused, phi2.
	{"model.layers.2.self_attn.qkv_proj.weight", s2, Role{2, "attn_qkv", "weight"}},
	{"model.layers.2.mlp.gate_up_proj.weight", s2, Role{2, "ffn_gate_up", "weight"}},
	{"model.layers.2.self_attn.dense.weight", s2, Role{2, "attn_out", "weight"}},
	{"model.layers.2.mlp.fc1.weight", s2, Role{2, "ffn_up", "weight"}},
	{"model.layers.2.mlp.fc2.weight", s2, Role{2, "ffn_down", "weight"}},
	{"model.final_layernorm.weight", s1, Role{-1, "norm", "norm"}},
	// Mixtral and other MoE.
	{"model.layers.1.block_sparse_moe.gate.weight", s2, Role{1, "moe_router", "weight"}},
	{"model.layers.1.block_sparse_moe.experts.7.w1.weight", s2, Role{1, "expert_gate", "weight"}},
	{"model.layers.1.block_sparse_moe.experts.7.w2.weight", s2, Role{1, "expert_down", "weight"}},
	{"model.layers.1.block_sparse_moe.experts.7.w3.weight", s2, Role{1, "expert_up", "weight"}},
	{"model.layers.3.mlp.gate.weight", s2, Role{3, "moe_router", "weight"}},
	{"model.layers.3.mlp.gate.e_score_correction_bias", s1, Role{3, "moe_router", "bias"}},
	{"model.layers.3.mlp.experts.12.gate_proj.weight", s2, Role{3, "expert_gate", "weight"}},
	{"model.layers.3.mlp.experts.12.down_proj.weight", s2, Role{3, "expert_down", "weight"}},
	{"model.layers.3.mlp.shared_experts.up_proj.weight", s2, Role{3, "shexp_up", "weight"}},
	{"model.layers.0.mlp.shared_expert.gate_proj.weight", s2, Role{0, "shexp_gate", "weight"}},
	{"model.layers.0.mlp.shared_expert_gate.weight", []int64{1, 64}, Role{0, "shexp_router", "weight"}},
	{"model.layers.0.mlp.router.weight", s2, Role{0, "moe_router", "weight"}},
	{"model.layers.0.mlp.experts.gate_up_proj_blocks", nil, Role{0, "expert_gate_up", "scale"}},
	{"model.layers.0.mlp.experts.gate_up_proj_scales", nil, Role{0, "expert_gate_up", "scale"}},
	{"model.layers.0.mlp.experts.gate_up_proj_bias", s2, Role{0, "expert_gate_up", "bias"}},
	{"model.layers.0.mlp.experts.down_proj_blocks", nil, Role{0, "expert_down", "scale"}},
	{"model.layers.0.self_attn.sinks", s1, Role{0, "attn_sinks", "weight"}},
	// DeepSeek MLA and FP8.
	{"model.layers.3.self_attn.q_a_proj.weight", s2, Role{3, "attn_q_a", "weight"}},
	{"model.layers.3.self_attn.q_b_proj.weight", s2, Role{3, "attn_q_b", "weight"}},
	{"model.layers.3.self_attn.kv_a_proj_with_mqa.weight", s2, Role{3, "attn_kv_a", "weight"}},
	{"model.layers.3.self_attn.kv_b_proj.weight", s2, Role{3, "attn_kv_b", "weight"}},
	{"model.layers.3.self_attn.kv_a_layernorm.weight", s1, Role{3, "attn_kv_a_norm", "norm"}},
	{"model.layers.3.self_attn.q_proj.weight_scale_inv", s2, Role{3, "attn_q", "scale"}},
	{"model.layers.3.mlp.experts.7.down_proj.weight_scale_inv", s2, Role{3, "expert_down", "scale"}},
	// GPTQ / AWQ / bitsandbytes / compressed-tensors.
	{"model.layers.2.self_attn.q_proj.qweight", s2, Role{2, "attn_q", "scale"}},
	{"model.layers.2.self_attn.q_proj.qzeros", s2, Role{2, "attn_q", "scale"}},
	{"model.layers.2.self_attn.q_proj.scales", s2, Role{2, "attn_q", "scale"}},
	{"model.layers.2.self_attn.q_proj.g_idx", s1, Role{2, "attn_q", "scale"}},
	{"model.layers.2.mlp.down_proj.weight.absmax", s1, Role{2, "ffn_down", "scale"}},
	{"model.layers.2.mlp.down_proj.weight.quant_state.bitsandbytes__nf4", s1, Role{2, "ffn_down", "scale"}},
	{"model.layers.2.self_attn.k_proj.weight_scale", s1, Role{2, "attn_k", "scale"}},
	{"model.layers.2.self_attn.k_proj.input_scale", nil, Role{2, "attn_k", "scale"}},
	{"model.layers.2.self_attn.k_scale", nil, Role{2, "attn_k", "scale"}},
	// Meta llama (consolidated.pth), InternLM2.
	{"tok_embeddings.weight", s2, Role{-1, "embed", "weight"}},
	{"layers.5.attention.wq.weight", s2, Role{5, "attn_q", "weight"}},
	{"layers.5.attention.wo.weight", s2, Role{5, "attn_out", "weight"}},
	{"layers.5.feed_forward.w1.weight", s2, Role{5, "ffn_gate", "weight"}},
	{"layers.5.feed_forward.w2.weight", s2, Role{5, "ffn_down", "weight"}},
	{"layers.5.feed_forward.w3.weight", s2, Role{5, "ffn_up", "weight"}},
	{"layers.5.attention_norm.weight", s1, Role{5, "attn_norm", "norm"}},
	{"layers.5.ffn_norm.weight", s1, Role{5, "ffn_norm", "norm"}},
	{"norm.weight", s1, Role{-1, "norm", "norm"}},
	{"output.weight", s2, Role{-1, "head", "weight"}},
	{"model.layers.4.attention.wqkv.weight", s2, Role{4, "attn_qkv", "weight"}},

	// GGUF (llama.cpp).
	{"token_embd.weight", s2, Role{-1, "embed", "weight"}},
	{"blk.0.attn_q.weight", s2, Role{0, "attn_q", "weight"}},
	{"blk.0.attn_k.weight", s2, Role{0, "attn_k", "weight"}},
	{"blk.0.attn_v.weight", s2, Role{0, "attn_v", "weight"}},
	{"blk.0.attn_output.weight", s2, Role{0, "attn_out", "weight"}},
	{"blk.0.attn_norm.weight", s1, Role{0, "attn_norm", "norm"}},
	{"blk.12.attn_qkv.weight", s2, Role{12, "attn_qkv", "weight"}},
	{"blk.12.attn_qkv.bias", s1, Role{12, "attn_qkv", "bias"}},
	{"blk.4.ffn_gate.weight", s2, Role{4, "ffn_gate", "weight"}},
	{"blk.4.ffn_up.weight", s2, Role{4, "ffn_up", "weight"}},
	{"blk.4.ffn_down.weight", s2, Role{4, "ffn_down", "weight"}},
	{"blk.4.ffn_norm.weight", s1, Role{4, "ffn_norm", "norm"}},
	{"blk.3.ffn_gate_exps.weight", []int64{8, 64, 64}, Role{3, "expert_gate", "weight"}},
	{"blk.3.ffn_up_exps.weight", []int64{8, 64, 64}, Role{3, "expert_up", "weight"}},
	{"blk.3.ffn_down_exps.weight", []int64{8, 64, 64}, Role{3, "expert_down", "weight"}},
	{"blk.3.ffn_gate_inp.weight", s2, Role{3, "moe_router", "weight"}},
	{"blk.3.ffn_gate_shexp.weight", s2, Role{3, "shexp_gate", "weight"}},
	{"blk.3.attn_q_norm.weight", s1, Role{3, "attn_q_norm", "norm"}},
	{"blk.3.post_attention_norm.weight", s1, Role{3, "attn_post_norm", "norm"}},
	{"blk.3.post_ffw_norm.weight", s1, Role{3, "ffn_post_norm", "norm"}},
	{"blk.3.attn_kv_a_mqa.weight", s2, Role{3, "attn_kv_a", "weight"}},
	{"output_norm.weight", s1, Role{-1, "norm", "norm"}},
	{"output.weight", s2, Role{-1, "head", "weight"}},
	{"rope_freqs.weight", s1, Role{-1, "rope_freqs", "other"}},
	{"position_embd.weight", s2, Role{-1, "pos_embed", "weight"}},
	{"token_types.weight", s2, Role{-1, "type_embed", "weight"}},
	{"token_embd_norm.weight", s1, Role{-1, "embed_norm", "norm"}},
	{"blk.2.attn_output_norm.weight", s1, Role{2, "attn_norm", "norm"}},
	{"blk.2.layer_output_norm.bias", s1, Role{2, "ffn_norm", "norm"}},
	{"blk.4.ssm_in.weight", s2, Role{4, "ssm_in", "weight"}},
	{"enc.blk.0.attn_o.weight", s2, Role{0, "attn_out", "weight"}},
	{"enc.blk.0.attn_rel_b.weight", s2, Role{0, "rel_pos_bias", "weight"}},
	{"dec.blk.1.attn_q.weight", s2, Role{1, "dec_attn_q", "weight"}},
	{"dec.blk.1.cross_attn_q.weight", s2, Role{1, "xattn_q", "weight"}},
	{"dec.blk.1.cross_attn_norm.weight", s1, Role{1, "xattn_norm", "norm"}},
	{"dec.blk.1.ffn_up.weight", s2, Role{1, "dec_ffn_up", "weight"}},
	{"dec.output_norm.weight", s1, Role{-1, "norm", "norm"}},
	{"v.blk.3.attn_q.weight", s2, Role{3, "vis_attn_q", "weight"}},
	{"v.blk.3.ln1.weight", s1, Role{3, "vis_attn_norm", "norm"}},
	{"v.patch_embd.weight", s4, Role{-1, "vis_patch_embed", "weight"}},
	{"mm.2.weight", s2, Role{2, "mm_proj", "weight"}},

	// GPT-2, with and without the transformer. prefix.
	{"transformer.wte.weight", s2, Role{-1, "embed", "weight"}},
	{"transformer.wpe.weight", s2, Role{-1, "pos_embed", "weight"}},
	{"transformer.h.4.ln_1.weight", s1, Role{4, "attn_norm", "norm"}},
	{"transformer.h.4.attn.c_attn.weight", s2, Role{4, "attn_qkv", "weight"}},
	{"transformer.h.4.attn.c_attn.bias", s1, Role{4, "attn_qkv", "bias"}},
	{"transformer.h.4.attn.c_proj.weight", s2, Role{4, "attn_out", "weight"}},
	{"transformer.h.4.attn.bias", []int64{1, 1, 1024, 1024}, Role{4, "attn_mask", "other"}},
	{"transformer.h.4.attn.masked_bias", nil, Role{4, "attn_mask", "other"}},
	{"transformer.h.4.ln_2.bias", s1, Role{4, "ffn_norm", "norm"}},
	{"transformer.h.4.mlp.c_fc.weight", s2, Role{4, "ffn_up", "weight"}},
	{"transformer.h.4.mlp.c_proj.weight", s2, Role{4, "ffn_down", "weight"}},
	{"transformer.ln_f.weight", s1, Role{-1, "norm", "norm"}},
	{"h.0.attn.c_attn.weight", s2, Role{0, "attn_qkv", "weight"}},
	{"h.11.mlp.c_proj.bias", s1, Role{11, "ffn_down", "bias"}},
	{"ln_f.bias", s1, Role{-1, "norm", "norm"}},
	{"wte.weight", s2, Role{-1, "embed", "weight"}},
	// GPT-NeoX, falcon, qwen1, GPT-J, MPT.
	{"gpt_neox.embed_in.weight", s2, Role{-1, "embed", "weight"}},
	{"gpt_neox.layers.2.attention.query_key_value.weight", s2, Role{2, "attn_qkv", "weight"}},
	{"gpt_neox.layers.2.attention.dense.weight", s2, Role{2, "attn_out", "weight"}},
	{"gpt_neox.layers.2.mlp.dense_h_to_4h.weight", s2, Role{2, "ffn_up", "weight"}},
	{"gpt_neox.layers.2.mlp.dense_4h_to_h.weight", s2, Role{2, "ffn_down", "weight"}},
	{"embed_out.weight", s2, Role{-1, "head", "weight"}},
	{"transformer.h.1.self_attention.query_key_value.weight", s2, Role{1, "attn_qkv", "weight"}},
	{"transformer.h.1.ln_mlp.weight", s1, Role{1, "ffn_norm", "norm"}},
	{"transformer.h.1.mlp.w1.weight", s2, Role{1, "ffn_up", "weight"}},
	{"transformer.h.1.mlp.w2.weight", s2, Role{1, "ffn_gate", "weight"}},
	{"transformer.h.1.mlp.fc_out.weight", s2, Role{1, "ffn_down", "weight"}},
	{"transformer.blocks.2.attn.Wqkv.weight", s2, Role{2, "attn_qkv", "weight"}},
	{"transformer.blocks.2.norm_2.weight", s1, Role{2, "ffn_norm", "norm"}},

	// BERT / RoBERTa / DistilBERT.
	{"bert.embeddings.word_embeddings.weight", s2, Role{-1, "embed", "weight"}},
	{"bert.embeddings.position_embeddings.weight", s2, Role{-1, "pos_embed", "weight"}},
	{"bert.embeddings.token_type_embeddings.weight", s2, Role{-1, "type_embed", "weight"}},
	{"bert.embeddings.LayerNorm.weight", s1, Role{-1, "embed_norm", "norm"}},
	{"bert.embeddings.LayerNorm.bias", s1, Role{-1, "embed_norm", "norm"}},
	{"bert.embeddings.position_ids", []int64{1, 512}, Role{-1, "pos_embed", "other"}},
	{"bert.encoder.layer.7.attention.self.query.weight", s2, Role{7, "attn_q", "weight"}},
	{"bert.encoder.layer.7.attention.self.key.bias", s1, Role{7, "attn_k", "bias"}},
	{"bert.encoder.layer.7.attention.self.value.weight", s2, Role{7, "attn_v", "weight"}},
	{"bert.encoder.layer.7.attention.output.dense.weight", s2, Role{7, "attn_out", "weight"}},
	{"bert.encoder.layer.7.attention.output.LayerNorm.weight", s1, Role{7, "attn_norm", "norm"}},
	{"bert.encoder.layer.7.intermediate.dense.weight", s2, Role{7, "ffn_up", "weight"}},
	{"bert.encoder.layer.7.output.dense.weight", s2, Role{7, "ffn_down", "weight"}},
	{"bert.encoder.layer.7.output.LayerNorm.bias", s1, Role{7, "ffn_norm", "norm"}},
	{"bert.pooler.dense.weight", s2, Role{-1, "pooler", "weight"}},
	{"classifier.weight", s2, Role{-1, "head", "weight"}},
	{"classifier.bias", s1, Role{-1, "head", "bias"}},
	{"cls.predictions.transform.dense.weight", s2, Role{-1, "head_transform", "weight"}},
	{"cls.predictions.transform.LayerNorm.weight", s1, Role{-1, "norm", "norm"}},
	{"cls.predictions.decoder.weight", s2, Role{-1, "head", "weight"}},
	{"cls.predictions.bias", s1, Role{-1, "head", "bias"}},
	{"cls.seq_relationship.weight", s2, Role{-1, "head", "weight"}},
	{"roberta.encoder.layer.0.attention.self.query.weight", s2, Role{0, "attn_q", "weight"}},
	{"lm_head.dense.weight", s2, Role{-1, "head_transform", "weight"}},
	{"lm_head.layer_norm.weight", s1, Role{-1, "norm", "norm"}},
	{"lm_head.decoder.weight", s2, Role{-1, "head", "weight"}},
	{"lm_head.bias", s1, Role{-1, "head", "bias"}},
	{"classifier.dense.weight", s2, Role{-1, "head_transform", "weight"}},
	{"classifier.out_proj.weight", s2, Role{-1, "head", "weight"}},
	{"distilbert.transformer.layer.2.attention.q_lin.weight", s2, Role{2, "attn_q", "weight"}},
	{"distilbert.transformer.layer.2.attention.out_lin.weight", s2, Role{2, "attn_out", "weight"}},
	{"distilbert.transformer.layer.2.sa_layer_norm.weight", s1, Role{2, "attn_norm", "norm"}},
	{"distilbert.transformer.layer.2.ffn.lin1.weight", s2, Role{2, "ffn_up", "weight"}},
	{"distilbert.transformer.layer.2.ffn.lin2.weight", s2, Role{2, "ffn_down", "weight"}},
	{"distilbert.transformer.layer.2.output_layer_norm.weight", s1, Role{2, "ffn_norm", "norm"}},
	{"pre_classifier.weight", s2, Role{-1, "head_transform", "weight"}},

	// T5.
	{"shared.weight", s2, Role{-1, "embed", "weight"}},
	{"encoder.embed_tokens.weight", s2, Role{-1, "embed", "weight"}},
	{"encoder.block.0.layer.0.SelfAttention.q.weight", s2, Role{0, "attn_q", "weight"}},
	{"encoder.block.0.layer.0.SelfAttention.k.weight", s2, Role{0, "attn_k", "weight"}},
	{"encoder.block.0.layer.0.SelfAttention.v.weight", s2, Role{0, "attn_v", "weight"}},
	{"encoder.block.0.layer.0.SelfAttention.o.weight", s2, Role{0, "attn_out", "weight"}},
	{"encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", s2, Role{0, "rel_pos_bias", "weight"}},
	{"encoder.block.0.layer.0.layer_norm.weight", s1, Role{0, "attn_norm", "norm"}},
	{"encoder.block.3.layer.1.DenseReluDense.wi.weight", s2, Role{3, "ffn_up", "weight"}},
	{"encoder.block.3.layer.1.DenseReluDense.wi_0.weight", s2, Role{3, "ffn_gate", "weight"}},
	{"encoder.block.3.layer.1.DenseReluDense.wi_1.weight", s2, Role{3, "ffn_up", "weight"}},
	{"encoder.block.3.layer.1.DenseReluDense.wo.weight", s2, Role{3, "ffn_down", "weight"}},
	{"encoder.block.3.layer.1.layer_norm.weight", s1, Role{3, "ffn_norm", "norm"}},
	{"encoder.final_layer_norm.weight", s1, Role{-1, "norm", "norm"}},
	{"decoder.block.2.layer.0.SelfAttention.q.weight", s2, Role{2, "dec_attn_q", "weight"}},
	{"decoder.block.2.layer.0.layer_norm.weight", s1, Role{2, "dec_attn_norm", "norm"}},
	{"decoder.block.2.layer.1.EncDecAttention.q.weight", s2, Role{2, "xattn_q", "weight"}},
	{"decoder.block.2.layer.1.EncDecAttention.o.weight", s2, Role{2, "xattn_out", "weight"}},
	{"decoder.block.2.layer.1.layer_norm.weight", s1, Role{2, "xattn_norm", "norm"}},
	{"decoder.block.2.layer.2.DenseReluDense.wi_0.weight", s2, Role{2, "dec_ffn_gate", "weight"}},
	{"decoder.block.2.layer.2.DenseReluDense.wo.weight", s2, Role{2, "dec_ffn_down", "weight"}},
	{"decoder.block.2.layer.2.layer_norm.weight", s1, Role{2, "dec_ffn_norm", "norm"}},
	{"decoder.final_layer_norm.weight", s1, Role{-1, "norm", "norm"}},
	// BART / Whisper.
	{"model.encoder.layers.1.self_attn.q_proj.weight", s2, Role{1, "attn_q", "weight"}},
	{"model.encoder.layers.1.self_attn_layer_norm.weight", s1, Role{1, "attn_norm", "norm"}},
	{"model.encoder.layers.1.fc1.weight", s2, Role{1, "ffn_up", "weight"}},
	{"model.encoder.layers.1.fc2.weight", s2, Role{1, "ffn_down", "weight"}},
	{"model.encoder.layers.1.final_layer_norm.weight", s1, Role{1, "ffn_norm", "norm"}},
	{"model.encoder.layer_norm.weight", s1, Role{-1, "norm", "norm"}},
	{"model.encoder.embed_positions.weight", s2, Role{-1, "pos_embed", "weight"}},
	{"model.decoder.layers.1.self_attn.k_proj.weight", s2, Role{1, "dec_attn_k", "weight"}},
	{"model.decoder.layers.1.encoder_attn.q_proj.weight", s2, Role{1, "xattn_q", "weight"}},
	{"model.decoder.layers.1.encoder_attn.out_proj.weight", s2, Role{1, "xattn_out", "weight"}},
	{"model.decoder.layers.1.encoder_attn_layer_norm.weight", s1, Role{1, "xattn_norm", "norm"}},
	{"model.decoder.layers.1.fc2.weight", s2, Role{1, "dec_ffn_down", "weight"}},
	{"model.decoder.embed_tokens.weight", s2, Role{-1, "embed", "weight"}},
	{"proj_out.weight", s2, Role{-1, "head", "weight"}},

	// timm / torchvision CNNs.
	{"conv1.weight", []int64{64, 3, 7, 7}, Role{1, "conv", "weight"}},
	{"bn1.weight", s1, Role{1, "norm", "norm"}},
	{"bn1.running_mean", s1, Role{1, "norm", "norm"}},
	{"layer1.0.conv1.weight", s4, Role{100, "conv", "weight"}},
	{"layer1.0.bn2.bias", s1, Role{100, "norm", "norm"}},
	{"layer1.0.downsample.0.weight", []int64{256, 64, 1, 1}, Role{100, "conv", "weight"}},
	{"layer1.0.downsample.1.weight", s1, Role{100, "norm", "norm"}},
	{"layer1.0.downsample.1.running_var", s1, Role{100, "norm", "norm"}},
	{"layer3.5.conv2.weight", s4, Role{305, "conv", "weight"}},
	{"layer4.2.bn3.num_batches_tracked", nil, Role{402, "norm", "norm"}},
	{"fc.weight", []int64{1000, 2048}, Role{-1, "head", "weight"}},
	{"fc.bias", []int64{1000}, Role{-1, "head", "bias"}},
	{"features.0.weight", s4, Role{0, "conv", "weight"}},
	{"features.1.weight", s1, Role{1, "norm", "norm"}},
	{"features.1.running_mean", s1, Role{1, "norm", "norm"}},
	{"features.28.weight", s4, Role{28, "conv", "weight"}},
	{"classifier.0.weight", []int64{4096, 25088}, Role{0, "dense", "weight"}},
	{"classifier.6.weight", []int64{1000, 4096}, Role{6, "dense", "weight"}},
	{"net.features.8.weight", s4, Role{8, "conv", "weight"}},
	{"net.classifier.weight", []int64{10, 2048}, Role{-1, "head", "weight"}},
	{"conv_stem.weight", s4, Role{-1, "conv", "weight"}},
	{"blocks.1.0.conv_dw.weight", []int64{96, 1, 3, 3}, Role{100, "conv", "weight"}},
	{"stages.2.blocks.4.conv_dw.weight", []int64{384, 1, 7, 7}, Role{204, "conv", "weight"}},
	{"stages.2.blocks.4.gamma", []int64{384}, Role{204, "layer_scale", "other"}},
	{"head.fc.weight", s2, Role{-1, "head", "weight"}},
	{"head.norm.weight", s1, Role{-1, "norm", "norm"}},
	// timm ViT, HF ViT, CLIP.
	{"cls_token", []int64{1, 1, 768}, Role{-1, "cls_token", "weight"}},
	{"pos_embed", []int64{1, 197, 768}, Role{-1, "pos_embed", "weight"}},
	{"patch_embed.proj.weight", []int64{768, 3, 16, 16}, Role{-1, "patch_embed", "weight"}},
	{"blocks.0.norm1.weight", s1, Role{0, "attn_norm", "norm"}},
	{"blocks.0.attn.qkv.weight", s2, Role{0, "attn_qkv", "weight"}},
	{"blocks.0.attn.proj.weight", s2, Role{0, "attn_out", "weight"}},
	{"blocks.0.ls1.gamma", s1, Role{0, "layer_scale", "other"}},
	{"blocks.0.norm2.weight", s1, Role{0, "ffn_norm", "norm"}},
	{"blocks.11.mlp.fc1.weight", s2, Role{11, "ffn_up", "weight"}},
	{"blocks.11.mlp.fc2.weight", s2, Role{11, "ffn_down", "weight"}},
	{"fc_norm.weight", s1, Role{-1, "norm", "norm"}},
	{"head.weight", s2, Role{-1, "head", "weight"}},
	{"vit.embeddings.cls_token", []int64{1, 1, 768}, Role{-1, "cls_token", "weight"}},
	{"vit.embeddings.patch_embeddings.projection.weight", s4, Role{-1, "patch_embed", "weight"}},
	{"vit.encoder.layer.3.attention.attention.query.weight", s2, Role{3, "attn_q", "weight"}},
	{"vit.encoder.layer.3.attention.output.dense.weight", s2, Role{3, "attn_out", "weight"}},
	{"vit.encoder.layer.3.layernorm_before.weight", s1, Role{3, "attn_norm", "norm"}},
	{"vit.encoder.layer.3.layernorm_after.bias", s1, Role{3, "ffn_norm", "norm"}},
	{"text_model.embeddings.token_embedding.weight", s2, Role{-1, "embed", "weight"}},
	{"text_model.encoder.layers.3.layer_norm1.weight", s1, Role{3, "attn_norm", "norm"}},
	{"text_model.encoder.layers.3.mlp.fc2.weight", s2, Role{3, "ffn_down", "weight"}},
	{"text_model.final_layer_norm.weight", s1, Role{-1, "norm", "norm"}},
	{"vision_model.embeddings.class_embedding", s1, Role{-1, "vis_cls_token", "weight"}},
	{"vision_model.encoder.layers.3.self_attn.out_proj.weight", s2, Role{3, "vis_attn_out", "weight"}},
	{"vision_model.post_layernorm.weight", s1, Role{-1, "vis_norm", "norm"}},
	{"text_projection.weight", s2, Role{-1, "proj_out", "weight"}},
	// Multimodal wrappers.
	{"model.vision_tower.vision_model.encoder.layers.2.self_attn.q_proj.weight", s2, Role{2, "vis_attn_q", "weight"}},
	{"model.multi_modal_projector.linear_1.weight", s2, Role{1, "mm_proj", "weight"}},
	{"visual.blocks.5.attn.qkv.weight", s2, Role{5, "vis_attn_qkv", "weight"}},
	{"audio_tower.layers.0.self_attn.q_proj.weight", s2, Role{0, "aud_attn_q", "weight"}},
	// Mamba.
	{"backbone.embeddings.weight", s2, Role{-1, "embed", "weight"}},
	{"backbone.layers.4.mixer.in_proj.weight", s2, Role{4, "ssm_in", "weight"}},
	{"backbone.layers.4.mixer.conv1d.weight", []int64{1536, 1, 4}, Role{4, "ssm_conv", "weight"}},
	{"backbone.layers.4.mixer.A_log", []int64{1536, 16}, Role{4, "ssm_a", "weight"}},
	{"backbone.layers.4.mixer.out_proj.weight", s2, Role{4, "ssm_out", "weight"}},
	{"backbone.norm_f.weight", s1, Role{-1, "norm", "norm"}},

	// Keras (kernel:0 names, [in,out] layout).
	{"dense/kernel:0", s2, Role{0, "dense", "weight"}},
	{"dense/bias:0", s1, Role{0, "dense", "bias"}},
	{"dense_1/kernel:0", s2, Role{1, "dense", "weight"}},
	{"conv2d/kernel:0", s4, Role{0, "conv", "weight"}},
	{"conv2d_3/kernel:0", s4, Role{3, "conv", "weight"}},
	{"batch_normalization/gamma:0", s1, Role{0, "norm", "norm"}},
	{"batch_normalization/beta:0", s1, Role{0, "norm", "norm"}},
	{"batch_normalization_1/moving_mean:0", s1, Role{1, "norm", "norm"}},
	{"batch_normalization_1/moving_variance:0", s1, Role{1, "norm", "norm"}},
	{"model/dense/kernel:0", s2, Role{0, "dense", "weight"}},
	{"model_1/dense_3/kernel:0", s2, Role{3, "dense", "weight"}},
	{"conv_2/conv_2/kernel:0", s4, Role{2, "conv", "weight"}},
	{"fc_1/fc_1/kernel:0", s2, Role{1, "dense", "weight"}},
	{"output/output/kernel:0", s2, Role{-1, "head", "weight"}},
	{"predictions/kernel:0", s2, Role{-1, "head", "weight"}},
	{"embedding/embeddings:0", s2, Role{0, "embed", "weight"}},
	{"lstm/lstm_cell/recurrent_kernel:0", s2, Role{0, "rnn", "weight"}},

	// Flax.
	{"params/Dense_0/kernel", s2, Role{0, "dense", "weight"}},
	{"params/Conv_1/kernel", s4, Role{1, "conv", "weight"}},
	{"params/LayerNorm_0/scale", s1, Role{0, "norm", "norm"}},

	// Plain PyTorch.
	{"fc1.weight", s2, Role{1, "dense", "weight"}},
	{"fc2.bias", s1, Role{2, "dense", "bias"}},
	{"fc3.weight", s2, Role{3, "dense", "weight"}},
	{"layers.2.weight", s2, Role{2, "dense", "weight"}},
	{"net.0.weight", s2, Role{0, "dense", "weight"}},
	{"net.0.bias", s1, Role{0, "other", "bias"}}, // ClassifyAll takes the role of net.0.weight
	{"conv1.0.weight", s4, Role{1, "conv", "weight"}},
	{"fc1.0.weight", s2, Role{1, "dense", "weight"}},
	{"linear.weight", s2, Role{-1, "dense", "weight"}},
	{"out.weight", s2, Role{-1, "head", "weight"}},
	{"l1.weight", s2, Role{1, "dense", "weight"}},
	{"module.fc1.weight", s2, Role{1, "dense", "weight"}},
	{"rnn.weight_ih_l0", s2, Role{-1, "rnn", "weight"}},
	{"self_attn.in_proj_weight", s2, Role{-1, "attn_qkv", "weight"}},

	// PEFT LoRA.
	{"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", []int64{8, 768}, Role{0, "attn_qkv", "lora_a"}},
	{"base_model.model.transformer.h.11.attn.c_attn.lora_B.weight", []int64{2304, 8}, Role{11, "attn_qkv", "lora_b"}},
	{"base_model.model.score.weight", []int64{6, 768}, Role{-1, "head", "weight"}},
	{"base_model.model.model.layers.4.self_attn.v_proj.lora_A.default.weight", s2, Role{4, "attn_v", "lora_a"}},
	{"base_model.model.model.layers.4.self_attn.v_proj.base_layer.weight", s2, Role{4, "attn_v", "weight"}},
	{"base_model.model.model.layers.4.mlp.down_proj.lora_B.weight", s2, Role{4, "ffn_down", "lora_b"}},
	{"base_model.model.model.embed_tokens.lora_embedding_A", s2, Role{-1, "embed", "lora_a"}},
	{"base_model.model.score.modules_to_save.default.weight", s2, Role{-1, "head", "weight"}},
	// diffusers UNet and its LoRAs (new, attention-processor and kohya formats).
	{"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.down.weight", []int64{4, 320}, Role{0, "attn_q", "lora_a"}},
	{"unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora.up.weight", []int64{320, 4}, Role{0, "attn_q", "lora_b"}},
	{"unet.down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.lora_A.weight", []int64{4, 768}, Role{10, "xattn_k", "lora_a"}},
	{"unet.up_blocks.1.attentions.2.transformer_blocks.0.attn1.to_out.0.lora_B.weight", []int64{640, 4}, Role{720, "attn_out", "lora_b"}},
	{"down_blocks.1.attentions.0.transformer_blocks.0.attn1.processor.to_out_lora.down.weight", []int64{4, 640}, Role{100, "attn_out", "lora_a"}},
	{"down_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_v_lora.up.weight", []int64{640, 4}, Role{100, "xattn_v", "lora_b"}},
	{"mid_block.attentions.0.transformer_blocks.0.attn1.processor.to_q_lora.down.weight", []int64{4, 1280}, Role{500, "attn_q", "lora_a"}},
	{"up_blocks.3.attentions.2.transformer_blocks.0.attn2.processor.to_out_lora.up.weight", []int64{320, 4}, Role{920, "xattn_out", "lora_b"}},
	{"down_blocks.0.resnets.1.conv1.weight", s4, Role{10, "conv", "weight"}},
	{"down_blocks.0.resnets.1.norm1.weight", s1, Role{10, "norm", "norm"}},
	{"down_blocks.0.resnets.1.time_emb_proj.weight", s2, Role{10, "time_embed", "weight"}},
	{"down_blocks.0.attentions.0.proj_in.weight", s2, Role{0, "proj_in", "weight"}},
	{"down_blocks.0.attentions.0.transformer_blocks.0.norm2.weight", s1, Role{0, "xattn_norm", "norm"}},
	{"down_blocks.0.attentions.0.transformer_blocks.0.norm3.weight", s1, Role{0, "ffn_norm", "norm"}},
	{"down_blocks.0.attentions.0.transformer_blocks.0.ff.net.0.proj.weight", s2, Role{0, "ffn_gate_up", "weight"}},
	{"down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2.weight", s2, Role{0, "ffn_down", "weight"}},
	{"conv_in.weight", s4, Role{-1, "conv", "weight"}},
	{"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight", []int64{4, 320}, Role{0, "attn_q", "lora_a"}},
	{"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.alpha", nil, Role{0, "attn_q", "other"}},
	{"lora_unet_up_blocks_1_attentions_2_transformer_blocks_0_attn2_to_out_0.lora_up.weight", []int64{640, 4}, Role{720, "xattn_out", "lora_b"}},
	{"lora_unet_mid_block_attentions_0_transformer_blocks_0_ff_net_2.lora_up.weight", []int64{1280, 4}, Role{500, "ffn_down", "lora_b"}},
	{"lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", []int64{4, 768}, Role{0, "attn_q", "lora_a"}},
	{"lora_te1_text_model_encoder_layers_11_mlp_fc1.lora_up.weight", []int64{3072, 4}, Role{11, "ffn_up", "lora_b"}},
	{"text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.down.weight", []int64{4, 768}, Role{0, "attn_q", "lora_a"}},

	// Unknown names: a number in the name, role other, kind by suffix or shape.
	{"mel_80", []int64{80, 201}, Role{80, "other", "weight"}},
	{"codes", []int64{1, 2, 828}, Role{-1, "other", "weight"}},
	{"mask", []int64{33}, Role{-1, "other", "other"}},
	{"foo.3.bar.weight", s2, Role{3, "other", "weight"}},
	{"foo.bar.bias", s1, Role{-1, "other", "bias"}},
	{"", nil, Role{-1, "other", "other"}},
}

func TestClassify(t *testing.T) {
	for _, tt := range classifyTests {
		if got := Classify(tt.name, tt.shape); got != tt.want {
			t.Errorf("Classify(%q, %v) = %+v, want %+v", tt.name, tt.shape, got, tt.want)
		}
	}
}

// TestClassifyAllAgrees checks that ClassifyAll, on a single name, says what Classify says
// except where it must (a model of one sparse block key is renumbered).
func TestClassifyAllAgrees(t *testing.T) {
	for _, tt := range classifyTests {
		got := ClassifyAll([]string{tt.name}, [][]int64{tt.shape})[0]
		want := tt.want
		_, inf := classify(tt.name, tt.shape)
		if inf.src == srcComposite {
			want.Layer = 0
		}
		if inf.decGuess {
			want.Role = strings.TrimPrefix(want.Role, "dec_") // alone, a decoder has no encoder
		}
		if want.Role == RoleDense && want.Kind == KindWeight && len(tt.shape) == 2 && !inStack(tt.name) {
			want.Role = RoleHead // a lone dense layer is the head
		}
		if got != want {
			t.Errorf("ClassifyAll([%q]) = %+v, want %+v", tt.name, got, want)
		}
	}
}

func inStack(name string) bool {
	_, inf := classify(name, nil)
	return !inf.headable()
}

type tensor struct {
	name  string
	shape []int64
}

func split2(ts []tensor) ([]string, [][]int64) {
	var names []string
	var shapes [][]int64
	for _, t := range ts {
		names = append(names, t.name)
		shapes = append(shapes, t.shape)
	}
	return names, shapes
}

func TestClassifyAll(t *testing.T) {
	tests := []struct {
		desc  string
		model []tensor
		want  []Role
	}{
		{
			"resnet: blocks renumbered densely, stem outside",
			[]tensor{
				{"conv1.weight", s4}, {"bn1.weight", s1},
				{"layer1.0.conv1.weight", s4}, {"layer1.1.conv1.weight", s4},
				{"layer2.0.conv1.weight", s4}, {"layer2.0.downsample.1.bias", s1},
				{"layer2.0.downsample.1.weight", s1}, {"layer4.2.conv3.weight", s4},
				{"fc.weight", []int64{1000, 2048}}, {"fc.bias", []int64{1000}},
			},
			[]Role{
				{-1, "conv", "weight"}, {-1, "norm", "norm"},
				{0, "conv", "weight"}, {1, "conv", "weight"},
				{2, "conv", "weight"}, {2, "norm", "norm"},
				{2, "norm", "norm"}, {3, "conv", "weight"},
				{-1, "head", "weight"}, {-1, "head", "bias"},
			},
		},
		{
			"vgg: biases take their weight's role, last classifier Linear is the head",
			[]tensor{
				{"features.0.weight", s4}, {"features.0.bias", s1},
				{"features.1.weight", s1}, {"features.1.bias", s1},
				{"classifier.0.weight", []int64{4096, 25088}}, {"classifier.0.bias", []int64{4096}},
				{"classifier.6.weight", []int64{10, 4096}}, {"classifier.6.bias", []int64{10}},
			},
			[]Role{
				{0, "conv", "weight"}, {0, "conv", "bias"},
				{1, "norm", "norm"}, {1, "norm", "norm"},
				{0, "dense", "weight"}, {0, "dense", "bias"},
				{6, "head", "weight"}, {6, "head", "bias"},
			},
		},
		{
			"mlp: fc10 comes after fc9 whatever the name order",
			[]tensor{
				{"fc1.weight", s2}, {"fc10.weight", []int64{10, 64}}, {"fc10.bias", []int64{10}}, {"fc9.weight", s2},
			},
			[]Role{{1, "dense", "weight"}, {10, "head", "weight"}, {10, "head", "bias"}, {9, "dense", "weight"}},
		},
		{
			"keras: dense_2 is the last Dense",
			[]tensor{{"dense/kernel:0", s2}, {"dense_2/kernel:0", s2}, {"dense_2/bias:0", s1}, {"dense_1/kernel:0", s2}},
			[]Role{{0, "dense", "weight"}, {2, "head", "weight"}, {2, "head", "bias"}, {1, "dense", "weight"}},
		},
		{
			"opt: decoder-only, no dec_ prefix",
			[]tensor{
				{"model.decoder.embed_tokens.weight", s2},
				{"model.decoder.layers.0.self_attn.q_proj.weight", s2},
				{"model.decoder.layers.0.fc2.weight", s2},
				{"model.decoder.layers.0.final_layer_norm.weight", s1},
				{"lm_head.weight", s2},
			},
			[]Role{{-1, "embed", "weight"}, {0, "attn_q", "weight"}, {0, "ffn_down", "weight"}, {0, "ffn_norm", "norm"}, {-1, "head", "weight"}},
		},
		{
			"bart: encoder-decoder keeps dec_",
			[]tensor{
				{"model.encoder.layers.0.self_attn.q_proj.weight", s2},
				{"model.decoder.layers.0.self_attn.q_proj.weight", s2},
				{"model.decoder.layers.0.encoder_attn.q_proj.weight", s2},
			},
			[]Role{{0, "attn_q", "weight"}, {0, "dec_attn_q", "weight"}, {0, "xattn_q", "weight"}},
		},
		{
			"gemma2: post_attention_layernorm is a post-norm",
			[]tensor{
				{"model.layers.0.post_attention_layernorm.weight", s1},
				{"model.layers.0.pre_feedforward_layernorm.weight", s1},
			},
			[]Role{{0, "attn_post_norm", "norm"}, {0, "ffn_norm", "norm"}},
		},
		{
			"unet: forward order down < mid < up",
			[]tensor{
				{"up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.weight", s2},
				{"mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight", s2},
				{"down_blocks.2.attentions.1.transformer_blocks.0.attn1.to_q.weight", s2},
				{"down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.weight", s2},
				{"time_embedding.linear_1.weight", s2},
			},
			[]Role{{3, "attn_q", "weight"}, {2, "attn_q", "weight"}, {1, "attn_q", "weight"}, {0, "attn_q", "weight"}, {-1, "time_embed", "weight"}},
		},
		{
			"llama with tied embeddings: no head",
			[]tensor{{"model.embed_tokens.weight", s2}, {"model.layers.0.mlp.down_proj.weight", s2}, {"model.norm.weight", s1}},
			[]Role{{-1, "embed", "weight"}, {0, "ffn_down", "weight"}, {-1, "norm", "norm"}},
		},
	}
	for _, tt := range tests {
		names, shapes := split2(tt.model)
		got := ClassifyAll(names, shapes)
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: ClassifyAll =\n%+v\nwant\n%+v", tt.desc, got, tt.want)
		}
	}
}

func TestFindHead(t *testing.T) {
	tests := []struct {
		desc  string
		model []tensor
		want  int
	}{
		{"explicit lm_head", []tensor{{"model.embed_tokens.weight", s2}, {"lm_head.weight", s2}}, 1},
		{"gguf output", []tensor{{"token_embd.weight", s2}, {"output_norm.weight", s1}, {"output.weight", s2}}, 2},
		{"cnn fc", []tensor{{"conv1.weight", s4}, {"conv2.weight", s4}, {"fc.weight", s2}, {"fc.bias", s1}}, 2},
		{"mlp fc1..fc3", []tensor{{"fc1.weight", s2}, {"fc3.weight", s2}, {"fc2.weight", s2}}, 1},
		{"keras output", []tensor{{"fc_1/fc_1/kernel:0", s2}, {"output/output/kernel:0", s2}, {"fc_2/fc_2/kernel:0", s2}}, 1},
		{"tinygrad l1 l2", []tensor{{"l1.weight", s2}, {"l2.weight", s2}}, 1},
		{"module list", []tensor{{"layers.0.weight", s2}, {"layers.1.weight", s2}, {"layers.1.bias", s1}}, 1},
		{"bert pretraining prefers the LM head", []tensor{{"cls.seq_relationship.weight", s2}, {"cls.predictions.decoder.weight", s2}}, 1},
		{"roberta classifier", []tensor{{"classifier.dense.weight", s2}, {"classifier.out_proj.weight", s2}}, 1},
		{"not a bias", []tensor{{"fc.bias", s1}}, -1},
		{"no dense inside transformer blocks", []tensor{{"h.0.mlp.dense.weight", s2}}, -1},
		{"vision tower head ignored", []tensor{{"vision_model.head.weight", s2}}, -1},
		{"none", []tensor{{"model.layers.0.self_attn.q_proj.weight", s2}}, -1},
	}
	for _, tt := range tests {
		names, shapes := split2(tt.model)
		if got := FindHead(names, shapes); got != tt.want {
			t.Errorf("%s: FindHead(%q) = %d, want %d", tt.desc, names, got, tt.want)
		}
	}
}

func TestIsHeadCandidate(t *testing.T) {
	tests := []struct {
		name string
		want bool
	}{
		{"lm_head.weight", true},
		{"output.weight", true},
		{"classifier.weight", true},
		{"fc.weight", true},
		{"head.weight", true},
		{"score.weight", true},
		{"output/output/kernel:0", true},
		{"fc3.weight", true},
		{"dense_2/kernel:0", true},
		{"classifier.6.weight", true},
		{"fc.bias", false},
		{"model.layers.3.mlp.down_proj.weight", false},
		{"blk.0.ffn_down.weight", false},
		{"conv1.weight", false},
		{"model.embed_tokens.weight", false},
		{"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight", false},
	}
	for _, tt := range tests {
		if got := IsHeadCandidate(tt.name); got != tt.want {
			t.Errorf("IsHeadCandidate(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestBase(t *testing.T) {
	tests := []struct{ role, want string }{
		{"ffn_down", "ffn_down"},
		{"dec_ffn_down", "ffn_down"},
		{"vis_attn_q", "attn_q"},
		{"aud_norm", "norm"},
		{"xattn_q", "attn_q"},
		{"xattn_out", "attn_out"},
		{"xattn_norm", "attn_norm"},
		{"vis_xattn_k", "attn_k"},
		{"xattn_rel_pos_bias", "rel_pos_bias"},
		{"other", "other"},
	}
	for _, tt := range tests {
		if got := Base(tt.role); got != tt.want {
			t.Errorf("Base(%q) = %q, want %q", tt.role, got, tt.want)
		}
	}
}

// TestRealFiles classifies every tensor listed in the conformance corpus (when present) and
// requires a known role for the files whose architecture the package covers.
func TestRealFiles(t *testing.T) {
	files, _ := filepath.Glob("/work/shared/corpus/realfiles/*.expected.json")
	if len(files) == 0 {
		t.Skip("corpus not present")
	}
	known := map[string]bool{
		"llamacpp-stories260K.gguf":                            true,
		"peft-gpt2-lora.adapter_model.safetensors":             true,
		"diffusers-sd15-lora.pytorch_lora_weights.safetensors": true,
		"tinygrad-mnist.model.safetensors":                     true,
		"safetensors-torch-save_model.mlp.safetensors":         true,
		"threatflux-test_model.overlapping-offsets.gguf":       true,
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var listing struct {
			Tensors []struct {
				Name  string  `json:"name"`
				Shape []int64 `json:"shape"`
			} `json:"tensors"`
		}
		if err := json.Unmarshal(b, &listing); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		base := strings.TrimSuffix(filepath.Base(f), ".expected.json")
		var names []string
		var shapes [][]int64
		for _, x := range listing.Tensors {
			names = append(names, x.Name)
			shapes = append(shapes, x.Shape)
		}
		for i, r := range ClassifyAll(names, shapes) {
			if known[base] && r.Role == RoleOther {
				t.Errorf("%s: %s: role other", base, names[i])
			}
			if strings.Contains(names[i], "lora") && r.Kind != KindLoRAA && r.Kind != KindLoRAB {
				t.Errorf("%s: %s: kind %q, want a LoRA factor", base, names[i], r.Kind)
			}
		}
	}
}

// TestClassifyNeverPanics feeds Classify and ClassifyAll random names built from the
// separators and tokens the parser reacts to.
func TestClassifyNeverPanics(t *testing.T) {
	tokens := []string{".", "/", "_", ":", ":0", "0", "12", "999999999999", "layers", "layer1", "blk",
		"h", "block", "blocks", "down_blocks", "up_blocks", "mid_block", "attentions", "transformer_blocks",
		"weight", "bias", "lora_A", "lora_B", "lora", "down", "up", "_lora", "lora_unet_", "lora_te_",
		"q_proj", "decoder", "encoder", "v", "mm", "experts", "gamma", "scale", "_scale", "_blocks",
		"weight_scale_inv", "quant_state", "bitsandbytes__nf4", "modules_to_save", "base_layer",
		"\x00", "\xff", "é", "..", "//", " ", "", "_weight", "_bias", "layer", "net", "ff", "0."}
	rng := rand.New(rand.NewSource(1))
	var b strings.Builder
	names := make([]string, 0, 64)
	for i := 0; i < 20000; i++ {
		b.Reset()
		for n := rng.Intn(80); n > 0; n-- {
			b.WriteString(tokens[rng.Intn(len(tokens))])
		}
		name := b.String()
		var shape []int64
		if k := rng.Intn(6); k > 0 {
			shape = make([]int64, k-1)
		}
		r := Classify(name, shape)
		if r.Role == "" || r.Kind == "" || r.Layer < -1 {
			t.Fatalf("Classify(%q) = %+v", name, r)
		}
		names = append(names, name)
		if len(names) == cap(names) {
			ClassifyAll(names, nil)
			FindHead(names, nil)
			names = names[:0]
		}
	}
	// Many components: more than fit on the stack.
	long := strings.Repeat("a.", 500) + "layers.3.mlp.down_proj.weight"
	Classify(long, nil)
	Classify(strings.Repeat("lora_unet_a_", 200), nil)
}

func FuzzClassify(f *testing.F) {
	for _, tt := range classifyTests {
		f.Add(tt.name, len(tt.shape))
	}
	f.Fuzz(func(t *testing.T, name string, ndim int) {
		shape := make([]int64, ndim&7)
		r := Classify(name, shape)
		if r.Role == "" || r.Kind == "" || r.Layer < -1 {
			t.Fatalf("Classify(%q) = %+v", name, r)
		}
		ClassifyAll([]string{name, name + ".weight", name + ".bias"}, nil)
		IsHeadCandidate(name)
	})
}

func TestClassifyAllocs(t *testing.T) {
	names := []string{
		"model.layers.17.mlp.down_proj.weight",
		"blk.17.ffn_down.weight",
		"decoder.block.2.layer.1.EncDecAttention.q.weight",
		"base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
		"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight",
		"conv_2/conv_2/kernel:0",
	}
	for _, n := range names {
		if a := testing.AllocsPerRun(100, func() { Classify(n, s2) }); a != 0 {
			t.Errorf("Classify(%q) allocates %v times", n, a)
		}
	}
}

func BenchmarkClassify(b *testing.B) {
	names := make([]string, len(classifyTests))
	for i, tt := range classifyTests {
		names[i] = tt.name
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		Classify(names[i%len(names)], s2)
	}
}

func BenchmarkClassifyAll(b *testing.B) {
	var names []string
	var shapes [][]int64
	for l := 0; l < 80; l++ {
		for _, p := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"} {
			names = append(names, "model.layers."+itoa(l)+"."+p+".weight")
			shapes = append(shapes, s2)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ClassifyAll(names, shapes)
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
