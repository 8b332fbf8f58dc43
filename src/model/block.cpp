// The decoder layer's forward and its activation recomputation (BlockCheckpoint, reentrant as
// torch.utils.checkpoint), which also replays the forward's sequence split and MoE token map.
#include "block.h"

#include <tuple>
#include <utility>

#include <ATen/ATen.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/autograd/custom_function.h>

#include "grpo/model/kv_cache.h"
#include "grpo/model/model_config.h"

namespace grpo::model::detail {

BlockImpl::BlockImpl(const ModelConfig& c, int64_t index, const Split& sp) : split(sp) {
  input_layernorm = register_module("input_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  if (c.is_mla()) mla = register_module("self_attn", MLA(c, sp));
  else self_attn = register_module("self_attn", Attention(c, sp));
  post_attention_layernorm =
      register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.rms_norm_eps));
  if (c.is_moe_layer(index)) moe = register_module("mlp", MoE(c, sp));
  else mlp = register_module("mlp", MLP(c.hidden_size, c.intermediate_size, c.mlp_bias, sp, "intermediate_size"));
}

at::Tensor BlockImpl::forward(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                              const at::Tensor& mask, KVCache* cache, int64_t layer) {
  // Under sequence parallel the attention and the MLP gather the whole sequence themselves:
  // dense blocks' and MLA's projections through Split::linears (only this rank's part kept for
  // backward; split layers' gradients reduce-scattered; MLA's replicated latent projections get
  // whole gradients, copy_to_group'd where the latents enter split layers, as they are narrower
  // than the stream), the MoE in MoEImpl::forward.
  auto a = input_layernorm->forward_stream(x, split);
  auto h = x + (mla ? mla->forward(a, cos, sin, mask, cache, layer)
                    : self_attn->forward(a, cos, sin, mask, cache, layer));
  auto m = post_attention_layernorm->forward_stream(h, split);
  return h + (moe ? moe->forward(m) : mlp(m));
}

namespace {

// Activation recomputation of one block (reentrant, as torch.utils.checkpoint): forward runs the
// block without building a graph and keeps only its input; backward runs it again with the graph
// and back-propagates through it (parameter gradients accumulate directly, their hooks fire). The
// collectives of tp/ep run again in backward, in the same order on every rank. An MoE block's
// balance loss is a second output, so its gradient reaches the recomputation.
struct BlockCheckpoint : torch::autograd::Function<BlockCheckpoint> {
  // (block output, balance loss or an empty tensor)
  static std::pair<at::Tensor, at::Tensor> run(BlockImpl* b, const at::Tensor& x, const at::Tensor& cos,
                                               const at::Tensor& sin, const at::Tensor& mask, int64_t layer,
                                               MoEImpl::Phase phase) {
    if (b->moe) b->moe->phase = phase, b->moe->block_balance_loss = at::Tensor();
    auto out = b->forward(x, cos, sin, mask, nullptr, layer);
    at::Tensor bl;
    if (b->moe) {
      bl = b->moe->block_balance_loss;
      b->moe->phase = MoEImpl::Phase::kNone, b->moe->block_balance_loss = at::Tensor();
    }
    return {out, bl};
  }
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x,
                                                const at::Tensor& cos, const at::Tensor& sin, const at::Tensor& mask,
                                                int64_t block, int64_t layer) {
    auto* b = reinterpret_cast<BlockImpl*>(block);
    const at::Tensor m = mask.dim() == 1 ? at::Tensor() : mask;  // the empty sentinel: no mask
    at::Tensor out, bl;
    {
      at::NoGradGuard ng;
      std::tie(out, bl) = run(b, x, cos, sin, m, layer, MoEImpl::Phase::kFirstPass);
    }
    ctx->save_for_backward({x});
    ctx->saved_data["cos"] = cos;
    ctx->saved_data["sin"] = sin;
    ctx->saved_data["mask"] = m;
    ctx->saved_data["block"] = block;
    ctx->saved_data["layer"] = layer;
    ctx->saved_data["has_bl"] = bl.defined();
    ctx->saved_data["seq_on"] = b->split.seq_on();
    ctx->saved_data["seq_total"] = b->split.seq ? b->split.seq->total : int64_t(0);
    if (b->moe) {  // this forward's token-to-sequence map, for the recomputation
      ctx->saved_data["sequence"] = b->moe->sequence;
      ctx->saved_data["num_sequences"] = b->moe->num_sequences;
      ctx->saved_data["replay"] = b->moe->replay;
    }
    return {out, bl.defined() ? bl : at::zeros({}, out.options())};
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto x = ctx->get_saved_variables()[0].detach().requires_grad_(true);
    auto* b = reinterpret_cast<BlockImpl*>(ctx->saved_data["block"].toInt());
    if (b->moe) {
      b->moe->sequence = ctx->saved_data["sequence"].toTensor();
      b->moe->num_sequences = ctx->saved_data["num_sequences"].toInt();
      b->moe->replay = ctx->saved_data["replay"].toTensor();
    }
    at::Tensor out, bl;
    // the sequence split of the forward this recomputes (another forward may have run since)
    auto* seq = const_cast<SeqSplit*>(b->split.seq);
    const SeqSplit now = seq ? *seq : SeqSplit{};
    if (seq) seq->on = ctx->saved_data["seq_on"].toBool(), seq->total = ctx->saved_data["seq_total"].toInt();
    {
      at::AutoGradMode on(true);
      std::tie(out, bl) = run(b, x, ctx->saved_data["cos"].toTensor(), ctx->saved_data["sin"].toTensor(),
                              ctx->saved_data["mask"].toTensor(), ctx->saved_data["layer"].toInt(),
                              MoEImpl::Phase::kRecompute);
    }
    std::vector<at::Tensor> outs{out}, gs{grads[0].defined() ? grads[0] : at::zeros_like(out)};
    if (ctx->saved_data["has_bl"].toBool() && grads[1].defined() && bl.defined()) {
      outs.push_back(bl);
      gs.push_back(grads[1]);
    }
    if (seq) *seq = now;
    torch::autograd::backward(outs, gs);
    return {x.grad(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

std::vector<at::Tensor> recompute_block(BlockImpl& block, const at::Tensor& x, const at::Tensor& cos,
                                        const at::Tensor& sin, const at::Tensor& mask, int64_t layer) {
  // (an autograd function's tensor arguments must be defined: no mask is an empty tensor)
  return BlockCheckpoint::apply(x, cos, sin, mask.defined() ? mask : at::empty({0}, at::kBool),
                                reinterpret_cast<int64_t>(&block), layer);
}

}  // namespace grpo::model::detail
