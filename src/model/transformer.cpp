// The transformer as LibTorch modules. Module tree mirrors Hugging Face's LlamaForCausalLM:
//   model.embed_tokens, model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
//   post_attention_layernorm, mlp.{gate,up,down}_proj}, model.norm, lm_head.
// Attention uses at::scaled_dot_product_attention (fused kernels when available) with native GQA.
#include "grpo/model/transformer.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include "grpo/core/error.h"
#include "grpo/core/tensor_util.h"

namespace grpo::model {
namespace {

// RMSNorm as one autograd node with a closed-form backward (fewer saved tensors and kernel
// launches than the composite, which matters for small models on CPU):
//   r = rsqrt(mean(x^2) + eps), y = x r, out = w y
//   dx = r (g w - y mean(g w y)),   dw = sum over rows of g y
struct RMSNormFn : torch::autograd::Function<RMSNormFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& w, double eps) {
    auto xf = x.to(at::promote_types(x.scalar_type(), at::kFloat));  // fp32 (or fp64) math
    auto r = at::rsqrt(xf.square().mean(-1, true) + eps);
    auto y = xf * r;
    ctx->save_for_backward({y, r, w});
    return (y.to(x.scalar_type()) * w);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto y = saved[0], r = saved[1], w = saved[2];
    auto g = grads[0].to(y.scalar_type());
    auto gw = g * w.to(y.scalar_type());
    auto dx = r * (gw - y * (gw * y).mean(-1, true));
    auto dw = (g * y).reshape({-1, y.size(-1)}).sum(0);
    return {dx.to(grads[0].scalar_type()), dw.to(w.scalar_type()), at::Tensor()};
  }
};

struct RMSNormImpl : torch::nn::Module {
  RMSNormImpl(int64_t dim, double eps) : eps(eps) {
    weight = register_parameter("weight", at::ones({dim}));
  }
  at::Tensor forward(const at::Tensor& x) { return RMSNormFn::apply(x, weight, eps); }
  double eps;
  at::Tensor weight;
};
TORCH_MODULE(RMSNorm);

// RoPE in the rotate-half layout (Hugging Face Llama): out = x cos + rotate_half(x) sin with
// rotate_half([a, b]) = [-b, a]. One autograd node; its transpose gives the backward:
//   dx = g cos + [ (g sin)_2, -(g sin)_1 ]
at::Tensor rotate_half(const at::Tensor& x) {
  auto half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}
struct RopeFn : torch::autograd::Function<RopeFn> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                            const at::Tensor& cos, const at::Tensor& sin) {
    ctx->save_for_backward({cos, sin});
    return x * cos + rotate_half(x) * sin;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto g = grads[0];
    auto gs = g * saved[1];
    auto half = gs.size(-1) / 2;
    auto rt = at::cat({gs.narrow(-1, half, half), -gs.narrow(-1, 0, half)}, -1);
    return {g * saved[0] + rt, at::Tensor(), at::Tensor()};
  }
};

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(const ModelConfig& c) : heads(c.num_attention_heads), kv_heads(c.num_key_value_heads),
                                       head_dim(c.resolved_head_dim()) {
    auto lin = [&](int64_t in, int64_t out, bool bias) {
      return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
    };
    q_proj = register_module("q_proj", lin(c.hidden_size, heads * head_dim, c.attention_bias));
    k_proj = register_module("k_proj", lin(c.hidden_size, kv_heads * head_dim, c.attention_bias));
    v_proj = register_module("v_proj", lin(c.hidden_size, kv_heads * head_dim, c.attention_bias));
    o_proj = register_module("o_proj", lin(heads * head_dim, c.hidden_size, c.attention_out_bias));
    if (c.qk_norm) {
      q_norm = register_module("q_norm", RMSNorm(head_dim, c.rms_norm_eps));
      k_norm = register_module("k_norm", RMSNorm(head_dim, c.rms_norm_eps));
    }
  }
  // x [B, T, D]; cos/sin [B, 1, T, hd]; mask: undefined (causal, no padding) or bool
  // [B, 1, T, past+T] (true = may attend).
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& mask, KVCache* cache, int64_t layer) {
    auto B = x.size(0), T = x.size(1);
    auto q = q_proj(x).view({B, T, heads, head_dim}).transpose(1, 2);     // [B, H, T, hd]
    auto k = k_proj(x).view({B, T, kv_heads, head_dim}).transpose(1, 2);  // [B, KV, T, hd]
    auto v = v_proj(x).view({B, T, kv_heads, head_dim}).transpose(1, 2);
    if (q_norm) {  // Qwen3: normalise each head before the rotation
      q = q_norm(q);
      k = k_norm(k);
    }
    q = RopeFn::apply(q, cos, sin);
    k = RopeFn::apply(k, cos, sin);
    if (cache) std::tie(k, v) = cache->append(layer, k, v);
    at::Tensor out;
    if (mask.defined()) {
      out = at::scaled_dot_product_attention(q, k, v, mask, 0.0, false, std::nullopt,
                                             kv_heads != heads);
    } else {
      out = at::scaled_dot_product_attention(q, k, v, {}, 0.0, /*is_causal=*/true, std::nullopt,
                                             kv_heads != heads);
    }
    return o_proj(out.transpose(1, 2).reshape({B, T, heads * head_dim}));
  }
  int64_t heads, kv_heads, head_dim;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  RMSNorm q_norm{nullptr}, k_norm{nullptr};
};
TORCH_MODULE(Attention);

struct MLPImpl : torch::nn::Module {
  MLPImpl(const ModelConfig& c) {
    auto lin = [&](int64_t in, int64_t out) {
      return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(c.mlp_bias));
    };
    gate_proj = register_module("gate_proj", lin(c.hidden_size, c.intermediate_size));
    up_proj = register_module("up_proj", lin(c.hidden_size, c.intermediate_size));
    down_proj = register_module("down_proj", lin(c.intermediate_size, c.hidden_size));
  }
  at::Tensor forward(const at::Tensor& x) {
    return down_proj(at::silu(gate_proj(x)) * up_proj(x));
  }
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

struct BlockImpl : torch::nn::Module {
  BlockImpl(const ModelConfig& c) {
    input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    self_attn = register_module("self_attn", Attention(c));
    post_attention_layernorm =
        register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
    mlp = register_module("mlp", MLP(c));
  }
  at::Tensor forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                     const at::Tensor& mask, KVCache* cache, int64_t layer) {
    auto h = x + self_attn->forward(input_layernorm(x), cos, sin, mask, cache, layer);
    return h + mlp(post_attention_layernorm(h));
  }
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
  Attention self_attn{nullptr};
  MLP mlp{nullptr};
};
TORCH_MODULE(Block);

struct BackboneImpl : torch::nn::Module {
  BackboneImpl(const ModelConfig& c) {
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(Block(c));
    norm = register_module("norm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  }
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
};
TORCH_MODULE(Backbone);

}  // namespace

struct Transformer::Impl : torch::nn::Module {
  explicit Impl(const ModelConfig& c) : config(c) {
    model = register_module("model", Backbone(c));
    if (!c.tie_word_embeddings) {
      lm_head = register_module(
          "lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.hidden_size, c.vocab_size).bias(false)));
    }
    // RoPE table [max_pos, head_dim] (rotate-half layout, as Hugging Face Llama)
    auto hd = c.resolved_head_dim();
    auto inv_freq = 1.0 / at::pow(c.rope_theta, at::arange(0, hd, 2, at::kDouble) / hd);
    auto t = at::arange(c.max_position_embeddings, at::kDouble);
    auto freqs = at::outer(t, inv_freq);
    auto emb = at::cat({freqs, freqs}, -1);
    cos_table = register_buffer("rope_cos", emb.cos().to(at::kFloat));
    sin_table = register_buffer("rope_sin", emb.sin().to(at::kFloat));
    init_weights();
  }
  void init_weights() {
    at::NoGradGuard g;
    double std = config.initializer_range;
    for (auto& p : named_parameters()) {
      const auto& name = p.key();
      if (name.find("norm") != std::string::npos) continue;  // RMSNorm weights stay 1
      if (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0) {
        p.value().zero_();
        continue;
      }
      p.value().normal_(0.0, std);
    }
  }
  ModelConfig config;
  Backbone model{nullptr};
  torch::nn::Linear lm_head{nullptr};
  at::Tensor cos_table, sin_table;
};

Transformer::Transformer(const ModelConfig& config) : config_(config) {
  GRPO_CHECK(config.vocab_size > 0, "model.vocab_size must be set (found {})", config.vocab_size);
  impl_ = std::make_shared<Impl>(config);
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
  auto cos = m.cos_table.index_select(0, pos.reshape(-1)).view({B, 1, T, -1});
  auto sin = m.sin_table.index_select(0, pos.reshape(-1)).view({B, 1, T, -1});

  // Boolean mask [B, 1, T, past+T] unless the plain causal fused path applies.
  at::Tensor mask;
  if (attention_mask.defined() || past > 0) {
    const int64_t S = past + T;
    auto q_idx = at::arange(past, S, input_ids.options()).view({T, 1});
    auto k_idx = at::arange(0, S, input_ids.options()).view({1, S});
    auto causal = k_idx.le(q_idx);  // [T, S]
    mask = causal.view({1, 1, T, S}).expand({B, 1, T, S});
    if (attention_mask.defined()) {
      GRPO_CHECK(attention_mask.dim() == 2 && attention_mask.size(0) == B && attention_mask.size(1) == S,
                 "attention_mask must be [batch, past + seq] = [{}, {}], found {}", B, S,
                 attention_mask.sizes());
      auto valid = attention_mask.to(at::kBool).view({B, 1, 1, S});
      auto self = k_idx.eq(q_idx).view({1, 1, T, S});  // padded queries see themselves
      mask = (mask & valid) | self;
    }
  }
  auto h = m.model->embed_tokens(input_ids);
  int64_t layer = 0;
  for (const auto& mod : *m.model->layers) {
    h = mod->as<BlockImpl>()->forward(h, cos, sin, mask, cache, layer++);
  }
  if (cache) cache->commit(T);
  return m.model->norm(h);
}

at::Tensor Transformer::lm_head_weight() const {
  return impl_->lm_head ? impl_->lm_head->weight : impl_->model->embed_tokens->weight;
}

at::Tensor Transformer::logits(const at::Tensor& hidden) const {
  return at::matmul(hidden, lm_head_weight().t()).to(at::kFloat);
}

std::unique_ptr<KVCache> Transformer::make_cache(int64_t batch, int64_t capacity) const {
  auto w = lm_head_weight();
  return std::make_unique<StaticKVCache>(config_.num_hidden_layers, batch, config_.num_key_value_heads,
                                         capacity, config_.resolved_head_dim(), w.options());
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
    GRPO_CHECK(it->second.sizes() == p.sizes(), "{}: tensor '{}' has shape {}, the model expects {}",
               origin, name, it->second.sizes(), p.sizes());
    p.copy_(it->second);
    by_name.erase(it);
  }
  GRPO_CHECK(missing.empty(), "{}: missing tensors: {}", origin, fmt::join(missing, ", "));
}

void Transformer::copy_from(const Transformer& other) {
  load_parameters(other.named_parameters(), "model copy");
}

void Transformer::train(bool on) { impl_->train(on); }
bool Transformer::is_training() const { return impl_->is_training(); }

}  // namespace grpo::model
