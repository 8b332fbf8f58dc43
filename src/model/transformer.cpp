// The transformer as LibTorch modules. Module tree mirrors Hugging Face's LlamaForCausalLM /
// DeepseekV3ForCausalLM:
//   model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
//   post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head;
//   MLA: self_attn.{q_proj | q_a_proj, q_a_layernorm, q_b_proj}, kv_a_proj_with_mqa,
//        kv_a_layernorm, kv_b_proj, o_proj;
//   MoE: mlp.gate.{weight, e_score_correction_bias}, mlp.experts.{gate,up,down}_proj (stacked
//        [E, ...]; hf.cpp maps them to HF's per-expert tensors), mlp.shared_experts.*.
// Attention uses at::scaled_dot_product_attention (fused kernels when available) with native GQA.
//
// Tensor parallel (Megatron): each rank builds the layers at its share of the width (heads, MLP
// width, vocabulary); a replicated activation enters split layers through copy_to_group (its
// gradient summed over the group) and split partial results leave through reduce_from_group.
// Expert parallel: each rank holds E / ep routed experts; moe::expert_parallel_swiglu moves tokens.
//
// Files: parallel_linear (Split, row_linear), norm (RMSNorm), rope, attention (GQA), mla, mlp
// (SwiGLU), moe_layer (router, experts, MoE), block (decoder layer, recomputation); this file is
// the facade: the module tree's root, the RoPE table, parameter slicing and Transformer's methods.
#include "grpo/model/transformer.h"

#include <set>
#include <utility>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "block.h"
#include "grpo/core/error.h"
#include "grpo/core/tensor_util.h"
#include "grpo/dist/parallel.h"
#include "grpo/model/moe.h"
#include "moe_layer.h"
#include "norm.h"
#include "parallel_linear.h"
#include "rope.h"

namespace grpo::model {

using detail::Block;
using detail::BlockImpl;
using detail::MoEImpl;
using detail::RMSNorm;
using detail::SeqSplit;
using detail::Split;
using detail::yarn_mscale;

namespace {

struct BackboneImpl : torch::nn::Module {
  BackboneImpl(const ModelConfig& c, const Split& sp) {
    embed_tokens = register_module("embed_tokens",
                                   torch::nn::Embedding(sp.part(c.vocab_size, "vocab_size"), c.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(Block(c, i, sp));
    norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  }
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Backbone);

}  // namespace

// How a parameter is split: along `dim` into the parts of `group` (tp or ep).
struct SliceSpec {
  int64_t dim = 0;
  dist::Comm* group = nullptr;
};

struct Transformer::Impl : torch::nn::Module {
  explicit Impl(const ModelConfig& c, const Split& sp) : config(c), split(sp) {
    // LibTorch's layer constructors draw their own (discarded) initial values, as many as their
    // size: the generator is rewound after building, so init_weights draws the same numbers for
    // every layout
    auto gen = at::detail::getDefaultCPUGenerator();
    auto rng_state = gen.get_state();
    model = register_module("model", Backbone(c, sp));
    if (!c.tie_word_embeddings) {
      lm_head = register_module(
          "lm_head",
          torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, sp.part(c.vocab_size, "vocab_size")).bias(false)));
    }
    find_slices();
    // RoPE table [max_pos, rope_dim] (rotate-half layout, as Hugging Face), YaRN-scaled if set.
    auto hd = c.rope_dim();
    auto pos_freqs = at::pow(c.rope_theta, at::arange(0, hd, 2, at::kDouble) / hd);
    auto inv_freq = 1.0 / pos_freqs;
    double attention_factor = 1.0;
    if (c.rope_type == "yarn") {
      // transformers' _compute_yarn_parameters (truncate = true)
      auto correction_dim = [&](double rotations) {
        return hd * std::log(c.rope_original_max_position_embeddings / (rotations * 2 * M_PI)) /
               (2 * std::log(c.rope_theta));
      };
      double low = std::max(std::floor(correction_dim(c.rope_beta_fast)), 0.0);
      double high = std::min(std::ceil(correction_dim(c.rope_beta_slow)), double(hd - 1));
      if (low == high) high += 0.001;
      auto ramp = at::clamp((at::arange(hd / 2, at::kDouble) - low) / (high - low), 0, 1);
      auto extrapolation = 1 - ramp;
      inv_freq = (1.0 / (c.rope_factor * pos_freqs)) * (1 - extrapolation) + inv_freq * extrapolation;
      attention_factor = (c.rope_mscale != 0 && c.rope_mscale_all_dim != 0)
                             ? yarn_mscale(c.rope_factor, c.rope_mscale) /
                                   yarn_mscale(c.rope_factor, c.rope_mscale_all_dim)
                             : yarn_mscale(c.rope_factor, 1.0);
    }
    auto t = at::arange(c.max_position_embeddings, at::kDouble);
    auto freqs = at::outer(t, inv_freq);
    auto emb = at::cat({freqs, freqs}, -1);
    cos_table = register_buffer("rope_cos", (emb.cos() * attention_factor).to(at::kFloat));
    sin_table = register_buffer("rope_sin", (emb.sin() * attention_factor).to(at::kFloat));
    gen.set_state(rng_state);
    init_weights();
  }
  // Which parameters are split, by their (Hugging Face) names: column-parallel outputs along dim
  // 0, row-parallel inputs along dim 1, the vocabulary along dim 0, routed experts along dim 0 over
  // ep and along their intermediate width over tp.
  void find_slices() {
    auto ends = [](const std::string& n, const std::string& tail) {
      return n.size() >= tail.size() && n.compare(n.size() - tail.size(), tail.size(), tail) == 0;
    };
    for (auto& p : named_parameters()) {
      const auto& n = p.key();
      if (n.find(".mlp.experts.") != std::string::npos) {  // [experts, inter, hidden] / [experts, hidden, inter]
        expert_names.insert(n);
        if (split.ep_size() > 1) slices[n].push_back({0, split.ep});
        if (split.tp_size() > 1) slices[n].push_back({ends(n, "down_proj") ? 2 : 1, split.tp});
        continue;
      }
      if (split.tp_size() == 1) continue;
      if (n == "model.embed_tokens.weight" || n == "lm_head.weight") {
        slices[n] = {{0, split.tp}};
        continue;
      }
      for (const char* col : {"q_proj", "k_proj", "v_proj", "q_b_proj", "kv_b_proj", "gate_proj", "up_proj"})
        if (ends(n, std::string(".") + col + ".weight") || ends(n, std::string(".") + col + ".bias"))
          slices[n] = {{0, split.tp}};
      for (const char* row : {"o_proj", "down_proj"})
        if (ends(n, std::string(".") + row + ".weight")) slices[n] = {{1, split.tp}};
    }
  }
  std::vector<int64_t> full_shape(const std::string& name, const at::Tensor& local) const {
    auto shape = local.sizes().vec();
    auto it = slices.find(name);
    if (it != slices.end())
      for (const auto& sl : it->second) shape[size_t(sl.dim)] *= sl.group->size();
    return shape;
  }
  at::Tensor slice_of(const std::string& name, const at::Tensor& full) const {
    auto it = slices.find(name);
    if (it == slices.end()) return full;
    auto t = full;
    for (const auto& sl : it->second) {
      auto part = dist::even_shard(t.size(sl.dim), sl.group->size(), sl.group->rank());
      t = t.narrow(sl.dim, part.begin, part.size);
    }
    return t;
  }
  void init_weights() {
    at::NoGradGuard g;
    double std = config.initializer_range;
    for (auto& p : named_parameters()) {
      const auto& name = p.key();
      if (name.find("norm") != std::string::npos) continue;  // RMSNorm weights stay 1
      if (name.find("e_score_correction_bias") != std::string::npos) {
        p.value().zero_();
        continue;
      }
      if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
        p.value().zero_();
        continue;
      }
      if (!slices.count(name)) {
        p.value().normal_(0.0, std);
        continue;
      }
      // the whole tensor is drawn and this rank keeps its slice: every layout starts alike
      auto full = at::empty(full_shape(name, p.value()), p.value().options()).normal_(0.0, std);
      p.value().copy_(slice_of(name, full));
    }
  }
  ModelConfig config;
  Split split;
  std::map<std::string, std::vector<SliceSpec>> slices;  // a tensor may be split along two dims
  int64_t vocab_limit = 0;  // 0: the whole vocabulary
  bool recompute = false;   // activation recomputation per block in training forwards
  bool sequence_parallel = false;
  at::Tensor replay;  // routing replay for the next forward: [B, T, moe layers, k]
  std::shared_ptr<SeqSplit> seq;  // the current forward's sequence split (Split::seq points here)
  std::set<std::string> expert_names;
  Backbone model{nullptr};
  torch::nn::Linear lm_head{nullptr};
  at::Tensor cos_table, sin_table;
};

Transformer::Transformer(const ModelConfig& config, const Parallel& parallel)
    : config_(config), parallel_(parallel) {
  GRPO_CHECK(config.vocab_size > 0, "model.vocab_size must be set (found {})", config.vocab_size);
  auto seq = std::make_shared<SeqSplit>();
  impl_ = std::make_shared<Impl>(config, Split{parallel.tp, parallel.ep, seq.get()});
  impl_->seq = seq;
}

Transformer::~Transformer() = default;

at::Tensor Transformer::forward(const at::Tensor& input_ids, const at::Tensor& positions,
                                const at::Tensor& attention_mask, KVCache* cache) {
  auto& m = *impl_;
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  const int64_t past = cache ? cache->length() : 0;
  GRPO_CHECK(past + T <= config_.max_position_embeddings || positions.defined(),
             "sequence of {} tokens is longer than model.max_position_embeddings {}", past + T,
             config_.max_position_embeddings);
  at::Tensor pos = positions.defined()
                       ? positions
                       : at::arange(past, past + T, input_ids.options()).unsqueeze(0).expand({B, T});
  GRPO_CHECK(pos.numel() == 0 || pos.max().item<int64_t>() < config_.max_position_embeddings,
             "position {} is beyond model.max_position_embeddings {}", pos.max().item<int64_t>(),
             config_.max_position_embeddings);
  // RoPE tables in the model's dtype (as transformers does), so bf16 activations stay bf16
  const auto dt = m.model->embed_tokens->weight.scalar_type();
  auto cos = m.cos_table.index_select(0, pos.reshape(-1)).view({B, 1, T, m.cos_table.size(1)}).to(dt);
  auto sin = m.sin_table.index_select(0, pos.reshape(-1)).view({B, 1, T, m.cos_table.size(1)}).to(dt);

  // Boolean mask [B, 1, T, past+T] unless the plain causal fused path applies: no mask, or (no
  // cache) padding only at the ends of rows, which no real token attends to causally (the mask
  // still marks the real tokens for the MoE statistics below).
  bool padding_ends_rows = false;
  if (attention_mask.defined() && past == 0 && attention_mask.scalar_type() == at::kBool &&
      attention_mask.dim() == 2 && attention_mask.size(1) == T)
    padding_ends_rows = T < 2 || !(attention_mask.narrow(1, 0, T - 1).logical_not() & attention_mask.narrow(1, 1, T - 1))
                                      .any()
                                      .item<bool>();
  at::Tensor mask;
  if ((attention_mask.defined() && !padding_ends_rows) || past > 0) {
    const int64_t S = past + T;
    auto q_idx = at::arange(past, S, input_ids.options()).view({T, 1});
    auto k_idx = at::arange(0, S, input_ids.options()).view({1, S});
    auto causal = k_idx.le(q_idx);  // [T, S]
    mask = causal.view({1, 1, T, S}).expand({B, 1, T, S});
    if (attention_mask.defined()) {
      GRPO_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == S,
                 "attention_mask must be [batch, past + seq] = [{}, {}], found {}", B, S,
                 attention_mask.sizes());
      auto self = k_idx.eq(q_idx).view({1, 1, T, S});  // padded queries see themselves
      if (attention_mask.scalar_type() == at::kBool) {
        mask = (mask & attention_mask.view({B, 1, 1, S})) | self;
      } else {  // segment ids (packed sequences): attend within the own segment; 0 = padding
        auto seg = attention_mask.to(at::kLong);
        auto k_seg = seg.view({B, 1, 1, S});
        auto q_seg = seg.narrow(1, past, T).view({B, 1, T, 1});
        mask = (mask & k_seg.eq(q_seg) & k_seg.gt(0)) | self;
      }
    }
  }
  // Sequence parallel (training and full-sequence forwards; not cached decoding): from the
  // embedding's reduce-scatter to the final norm's gather, each tp rank holds its part of the
  // sequence of the residual stream.
  m.seq->on = m.sequence_parallel && m.split.tp_size() > 1 && !cache && T >= m.split.tp_size();
  m.seq->total = T;
  at::Tensor h;
  if (m.split.tp_size() == 1) {
    h = m.model->embed_tokens(input_ids);
  } else {  // vocab-parallel: ids outside this rank's rows contribute zeros, summed over the group
    const auto& w = m.model->embed_tokens->weight;
    const int64_t v0 = w.size(0) * m.split.tp->rank();
    auto local = input_ids - v0;
    auto in = local.ge(0) & local.lt(w.size(0));
    auto e = at::embedding(w, local.clamp(0, w.size(0) - 1)) * in.unsqueeze(-1).to(w.scalar_type());
    h = m.split.reduce(e);
  }
  // MoE statistics (expert load, balance loss: training forwards only) count the tokens the mask
  // marks real, per sequence (a row, or a segment of a packed row), so they do not depend on how
  // rows were batched
  at::Tensor sequence;
  int64_t num_sequences = B;
  if (config_.n_routed_experts > 0 && is_training()) {
    sequence = at::arange(B, input_ids.options().dtype(at::kLong)).unsqueeze(1).expand({B, T}).reshape({-1});
    if (attention_mask.defined()) {
      auto q = attention_mask.narrow(1, past, T);
      if (q.scalar_type() == at::kBool) {
        sequence = at::where(q.reshape({-1}), sequence, -1);
      } else {  // segment ids: one sequence per (row, segment); segment 0 is padding
        auto seg = q.to(at::kLong).reshape({-1});
        const int64_t span = seg.max().item<int64_t>() + 1;
        auto [uniq, inverse, counts] = at::_unique2(sequence * span + seg, /*sorted=*/true, /*return_inverse=*/true);
        auto is_real = uniq.remainder(span).ne(0).to(at::kLong);
        sequence = at::where(seg.gt(0), (is_real.cumsum(0) - 1).index_select(0, inverse), -1);
        num_sequences = is_real.sum().item<int64_t>();
      }
    }
  }
  int64_t layer = 0, moe_index = 0;
  const at::Tensor replay = std::exchange(m.replay, at::Tensor());  // (the next forward's only)
  if (replay.defined())
    GRPO_CHECK(replay.dim() == 4 && replay.size(0) == B && replay.size(1) == T &&
                   replay.size(2) == int64_t(moe_layers().size()) && replay.size(3) == config_.num_experts_per_tok,
               "routing replay: experts of shape {} for a forward of {} x {} tokens, {} MoE layers, top-k {}",
               replay.sizes(), B, T, moe_layers().size(), config_.num_experts_per_tok);
  for (const auto& mod : *m.model->layers) {
    auto* block = mod->as<BlockImpl>();
    if (block->moe) {
      block->moe->sequence = sequence, block->moe->num_sequences = num_sequences;
      block->moe->replay = replay.defined() ? replay.select(2, moe_index).reshape({B * T, -1}) : at::Tensor();
      ++moe_index;
    }
    if (m.recompute && !cache && is_training() && at::GradMode::is_enabled() && h.requires_grad()) {
      auto outs = detail::recompute_block(*block, h, cos, sin, mask, layer++);
      h = outs[0];
      if (block->moe && block->moe->balance_coef > 0 && B * T > 0) {
        auto& acc = block->moe->balance_loss;
        acc = acc.defined() ? acc + outs[1] : outs[1];
      }
    } else {
      h = block->forward(h, cos, sin, mask, cache, layer++);
    }
  }
  if (cache) cache->commit(T);
  auto out = m.split.gather(m.model->norm->forward_stream(h, m.split));
  m.seq->on = false;
  return out;
}

at::Tensor Transformer::lm_head_weight() const {
  return impl_->lm_head ? impl_->lm_head->weight : impl_->model->embed_tokens->weight;
}

at::Tensor Transformer::logits(const at::Tensor& hidden) const {
  const auto w = lm_head_weight();
  at::Tensor z;
  if (w.is_cpu() && impl_->split.tp_size() == 1 && hidden.dim() >= 1) {
    // [vocab, hidden] x [hidden, rows], returned as its transposed view: the CPU GEMM then packs
    // the few rows rather than the whole LM head (a decode step's logits at 32 rows and a 151k
    // vocabulary: 58 -> 33 ms); the sampler reads the view as it is. A large head goes in slices of
    // 2048 vocabulary rows, one GEMM each (SmolLM2's 49k x 576 head at 32 rows: 25 -> 20 ms).
    auto sizes = hidden.sizes().vec();
    sizes.back() = w.size(0);
    const auto ht = hidden.reshape({-1, hidden.size(-1)}).t();
    constexpr int64_t kSlice = 2048;
    at::Tensor zt;
    if (w.size(0) > 8 * kSlice) {
      zt = at::empty({w.size(0), ht.size(1)}, ht.options());
      for (int64_t i = 0; i < w.size(0); i += kSlice) {
        const int64_t n = std::min(kSlice, w.size(0) - i);
        auto zi = zt.narrow(0, i, n);
        at::mm_out(zi, w.narrow(0, i, n), ht);
      }
    } else {
      zt = at::mm(w, ht);
    }
    z = zt.t().view(sizes).to(at::kFloat);
  } else {
    z = at::matmul(hidden, w.t()).to(at::kFloat);
  }
  if (impl_->split.tp_size() > 1) z = dist::gather_last_dim(z, *impl_->split.tp);
  return vocab_limit() < z.size(-1) ? z.narrow(-1, 0, vocab_limit()) : z;
}

void Transformer::set_vocab_limit(int64_t n) {
  GRPO_CHECK(n >= 0 && n <= config_.vocab_size, "vocabulary limit {} is outside [0, model.vocab_size {}]", n,
             config_.vocab_size);
  impl_->vocab_limit = n;
}
int64_t Transformer::vocab_limit() const { return impl_->vocab_limit > 0 ? impl_->vocab_limit : config_.vocab_size; }

TokenLogProbs Transformer::token_logprobs(const at::Tensor& hidden, const at::Tensor& targets,
                                          const LogProbOptions& options) const {
  const auto& sp = impl_->split;
  auto w = lm_head_weight();
  const int64_t limit = vocab_limit();
  if (sp.tp_size() == 1) return model::token_logprobs(hidden, limit < w.size(0) ? w.narrow(0, 0, limit) : w, targets, options);
  const int64_t v0 = w.size(0) * sp.tp->rank();
  const int64_t rows = std::clamp<int64_t>(limit - v0, 0, w.size(0));
  return token_logprobs_vocab_parallel(hidden, w.narrow(0, 0, rows), targets, v0, limit, *sp.tp, options);
}

PagedKVCache::Shape Transformer::cache_shape() const {
  if (config_.is_mla())  // the compressed latent: (c_kv, k_rope) per token, one "head"
    return {config_.num_hidden_layers, 1, config_.kv_lora_rank, config_.qk_rope_head_dim};
  const int64_t hd = config_.resolved_head_dim();
  return {config_.num_hidden_layers, config_.num_key_value_heads / impl_->split.tp_size(), hd, hd};
}

core::Work Transformer::forward_work(double tokens, double logit_tokens, double attended, double kv_read,
                                            double kv_written) const {
  const double tp = double(impl_->split.tp_size()), elt = double(lm_head_weight().element_size());
  core::Work w;
  w.flops = config_.forward_flops(tokens, logit_tokens, attended) / tp;
  w.bytes = (config_.forward_weight_elements(tokens, logit_tokens) +
             double(config_.kv_elements_per_token()) * (kv_read + kv_written)) * elt / tp;
  return w;
}

std::unique_ptr<KVCache> Transformer::make_cache(int64_t batch, int64_t capacity) const {
  const auto s = cache_shape();
  return std::make_unique<StaticKVCache>(s.layers, batch, s.kv_heads, capacity, s.head_dim,
                                         lm_head_weight().options(), s.v_head_dim);
}

std::unique_ptr<PagedKVCache> Transformer::make_paged_cache(int64_t block_size, int64_t max_blocks) const {
  return std::make_unique<PagedKVCache>(cache_shape(), block_size, max_blocks, lm_head_weight().options());
}

std::vector<std::pair<std::string, at::Tensor>> Transformer::named_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& p : impl_->named_parameters(true)) out.emplace_back(p.key(), p.value());
  return out;
}

std::vector<at::Tensor> Transformer::parameters() const { return impl_->parameters(true); }

int64_t Transformer::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

std::vector<std::pair<std::string, at::Tensor>> Transformer::full_parameters() const {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (auto& [name, p] : named_parameters()) out.emplace_back(name, gather_full(name, p));
  return out;
}

at::Tensor Transformer::gather_full(const std::string& name, const at::Tensor& local) const {
  auto it = impl_->slices.find(name);
  if (it == impl_->slices.end()) return local;
  auto t = local;
  for (auto sl = it->second.rbegin(); sl != it->second.rend(); ++sl) t = dist::gather_dim(t, sl->dim, *sl->group);
  return t;
}

at::Tensor Transformer::local_slice(const std::string& name, const at::Tensor& full) const {
  return impl_->slice_of(name, full);
}

bool Transformer::is_expert_parameter(const std::string& name) const { return impl_->expert_names.count(name) > 0; }

void Transformer::load_parameters(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                  const std::string& origin) {
  std::map<std::string, at::Tensor> by_name(tensors.begin(), tensors.end());
  at::NoGradGuard g;
  std::vector<std::string> missing;
  for (auto& [name, p] : named_parameters()) {
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      missing.push_back(name);
      continue;
    }
    auto whole = impl_->full_shape(name, p);
    GRPO_CHECK(it->second.sizes() == at::IntArrayRef(whole), "{}: tensor '{}' has shape {}, the model expects {}",
               origin, name, it->second.sizes(), at::IntArrayRef(whole));
    p.copy_(impl_->slice_of(name, it->second));
    by_name.erase(it);
  }
  GRPO_CHECK(missing.empty(), "{}: missing tensors: {}", origin, fmt::join(missing, ", "));
}

void Transformer::copy_from(const Transformer& other) {
  auto mine = named_parameters(), theirs = other.named_parameters();
  GRPO_CHECK(mine.size() == theirs.size(), "model copy: {} parameters vs {}", theirs.size(), mine.size());
  at::NoGradGuard g;
  for (size_t i = 0; i < mine.size(); ++i) {
    GRPO_CHECK(mine[i].first == theirs[i].first && mine[i].second.sizes() == theirs[i].second.sizes(),
               "model copy: '{}' {} does not match '{}' {}", theirs[i].first, theirs[i].second.sizes(),
               mine[i].first, mine[i].second.sizes());
    mine[i].second.copy_(theirs[i].second);
  }
}

namespace {
MoEImpl* moe_of(torch::nn::Module& model, int64_t layer) {
  auto& layers = *static_cast<Transformer::Impl&>(model).model->layers;
  GRPO_CHECK(layer >= 0 && layer < int64_t(layers.size()), "layer {} out of range", layer);
  auto* b = layers[layer]->as<BlockImpl>();
  GRPO_CHECK(b->moe, "layer {} is not an MoE layer", layer);
  return b->moe.get();
}
}  // namespace

std::vector<int64_t> Transformer::moe_layers() const {
  std::vector<int64_t> out;
  for (int64_t l = 0; l < config_.num_hidden_layers; ++l)
    if (config_.is_moe_layer(l)) out.push_back(l);
  return out;
}

moe::Routing Transformer::last_routing(int64_t layer) const { return moe_of(*impl_, layer)->last; }

void Transformer::set_routing_replay(const at::Tensor& experts) {
  GRPO_CHECK(!experts.defined() || !moe_layers().empty(), "routing replay: the model has no MoE layers");
  impl_->replay = experts;
}

at::Tensor Transformer::expert_load(int64_t layer) const { return moe_of(*impl_, layer)->load.clone(); }

void Transformer::set_expert_load(int64_t layer, const at::Tensor& load) {
  auto& l = moe_of(*impl_, layer)->load;
  GRPO_CHECK(load.sizes() == l.sizes(), "set_expert_load: {} counts for {} experts", load.numel(), l.numel());
  l.copy_(load);
}

void Transformer::reset_expert_load() {
  for (auto l : moe_layers()) moe_of(*impl_, l)->load.zero_();
}

void Transformer::update_router_bias(double rate) {
  for (auto l : moe_layers()) {
    auto* m = moe_of(*impl_, l);
    if (rate > 0) moe::update_bias(m->gate->e_score_correction_bias, m->load, rate);
    m->load.zero_();
  }
}

void Transformer::to(const at::Device& device) {
  impl_->to(device);  // parameters (in place: references to them stay valid) and the RoPE tables
  for (auto l : moe_layers()) {
    auto& load = moe_of(*impl_, l)->load;
    load = load.to(device);
  }
}

at::Device Transformer::device() const { return impl_->model->embed_tokens->weight.device(); }

void Transformer::set_recompute(bool on) { impl_->recompute = on; }
void Transformer::set_sequence_parallel(bool on) { impl_->sequence_parallel = on; }
bool Transformer::recompute() const { return impl_->recompute; }

dist::Comm* Transformer::lockstep_group() const {
  return parallel_.ep && parallel_.ep->size() > 1 ? parallel_.ep : nullptr;
}

void Transformer::idle_forward() {
  if (!lockstep_group()) return;
  at::NoGradGuard ng;
  auto none = at::zeros({0, 1}, at::TensorOptions(device()).dtype(at::kLong));
  forward(none, none, at::ones({0, 1}, at::TensorOptions(device()).dtype(at::kBool)));
}

void Transformer::set_balance_loss_coef(double alpha) {
  for (auto l : moe_layers()) moe_of(*impl_, l)->balance_coef = alpha;
}

at::Tensor Transformer::take_balance_loss() {
  at::Tensor total;
  for (auto l : moe_layers()) {
    auto* m = moe_of(*impl_, l);
    if (!m->balance_loss.defined()) continue;
    total = total.defined() ? total + m->balance_loss : m->balance_loss;
    m->balance_loss = at::Tensor();
  }
  return total;
}

void Transformer::train(bool on) { impl_->train(on); }
bool Transformer::is_training() const { return impl_->is_training(); }

}  // namespace grpo::model
