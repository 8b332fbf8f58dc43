#include "grpo/dist/parallel.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/custom_function.h>

#include "grpo/core/error.h"

namespace grpo::dist {

std::vector<int64_t> Layout::tp_group(int64_t rank) const {
  std::vector<int64_t> g;
  for (int64_t t = 0; t < tp; ++t) g.push_back(dp_rank(rank) * tp + t);
  return g;
}
std::vector<int64_t> Layout::dp_group(int64_t rank) const {
  std::vector<int64_t> g;
  for (int64_t d = 0; d < dp(); ++d) g.push_back(d * tp + tp_rank(rank));
  return g;
}
std::vector<int64_t> Layout::ep_group(int64_t rank) const {
  std::vector<int64_t> g;
  const int64_t block = dp_rank(rank) / ep;
  for (int64_t e = 0; e < ep; ++e) g.push_back((block * ep + e) * tp + tp_rank(rank));
  return g;
}
std::vector<int64_t> Layout::expert_dp_group(int64_t rank) const {
  std::vector<int64_t> g;
  for (int64_t b = 0; b < dp() / ep; ++b) g.push_back((b * ep + ep_rank(rank)) * tp + tp_rank(rank));
  return g;
}
std::string Layout::describe() const {
  auto s = fmt::format("dp {} x tp {}", dp(), tp);
  if (ep > 1) s += fmt::format(" (experts over ep {} of the dp ranks)", ep);
  return s;
}

Layout make_layout(int64_t world, int64_t tp, int64_t ep) {
  GRPO_CHECK(tp >= 1 && world % tp == 0, "parallel.tp ({}) must divide the number of processes ({})", tp, world);
  Layout l{world, tp, ep};
  GRPO_CHECK(ep >= 1 && l.dp() % ep == 0,
             "parallel.ep ({}) must divide the data-parallel size ({} processes / tp {} = {}): expert "
             "parallelism splits the experts over data-parallel ranks", ep, world, tp, l.dp());
  return l;
}

Groups make_groups(Comm& world, const Layout& l, const std::string& prefix) {
  GRPO_CHECK(world.size() == l.world, "make_groups: a layout for {} processes in a job of {}", l.world, world.size());
  Groups g;
  g.layout = l;
  g.world = &world;
  const int64_t r = world.rank();
  auto name = [&](const char* kind, const std::vector<int64_t>& ranks) {
    return fmt::format("{}{}/{}", prefix, kind, fmt::join(ranks, "-"));
  };
  // the same order on every rank (each construction is a rendezvous of its members)
  g.tp = world.group(l.tp_group(r), name("tp", l.tp_group(r)));
  g.dp = world.group(l.dp_group(r), name("dp", l.dp_group(r)));
  g.ep = world.group(l.ep_group(r), name("ep", l.ep_group(r)));
  g.expert_dp = world.group(l.expert_dp_group(r), name("edp", l.expert_dp_group(r)));
  return g;
}

Shard even_shard(int64_t n, int64_t parts, int64_t index) {
  GRPO_ASSERT(parts >= 1 && index >= 0 && index < parts && n % parts == 0);
  return {n / parts * index, n / parts};
}

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

Comm* comm_of(AutogradContext* ctx) { return reinterpret_cast<Comm*>(ctx->saved_data["comm"].toInt()); }
void keep_comm(AutogradContext* ctx, Comm& c) { ctx->saved_data["comm"] = reinterpret_cast<int64_t>(&c); }

struct CopyToGroup : torch::autograd::Function<CopyToGroup> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, Comm* c) {
    keep_comm(ctx, *c);
    return x.view_as(x);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list g) {
    auto d = g[0].contiguous().clone();
    comm_of(ctx)->all_reduce_sum(d);
    return {d, at::Tensor()};
  }
};

struct ReduceFromGroup : torch::autograd::Function<ReduceFromGroup> {
  static at::Tensor forward(AutogradContext*, const at::Tensor& x, Comm* c) {
    auto y = x.contiguous().clone();
    c->all_reduce_sum(y);
    return y;
  }
  static tensor_list backward(AutogradContext*, tensor_list g) { return {g[0], at::Tensor()}; }
};

struct AllToAllRows : torch::autograd::Function<AllToAllRows> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, std::vector<int64_t> send,
                            std::vector<int64_t>* recv_out, Comm* c) {
    keep_comm(ctx, *c);
    std::vector<int64_t> recv;
    auto y = c->all_to_all(x, send, &recv);
    ctx->saved_data["send"] = send;
    ctx->saved_data["recv"] = recv;
    if (recv_out) *recv_out = recv;
    return y;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list g) {
    auto recv = ctx->saved_data["recv"].toIntVector();
    auto d = comm_of(ctx)->all_to_all(g[0].contiguous(), recv);
    return {d, at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor copy_to_group(const at::Tensor& x, Comm& group) {
  if (group.size() == 1) return x;
  return CopyToGroup::apply(x, &group);
}

at::Tensor reduce_from_group(const at::Tensor& x, Comm& group) {
  if (group.size() == 1) return x;
  return ReduceFromGroup::apply(x, &group);
}

namespace {
// A sequence of `total` over `parts` ranks: the first total % parts ranks take one more.
Shard sequence_shard(int64_t total, int64_t parts, int64_t index) {
  const int64_t base = total / parts, extra = total % parts;
  return {index * base + std::min(index, extra), base + (index < extra ? 1 : 0)};
}
// x with zeros appended along `dim` up to `size` (equal shards for the collectives)
at::Tensor pad_to(const at::Tensor& x, int64_t dim, int64_t size) {
  if (x.size(dim) == size) return x;
  auto shape = x.sizes().vec();
  shape[size_t(dim)] = size - x.size(dim);
  return at::cat({x, at::zeros(shape, x.options())}, dim);
}
// every rank's shard of `total` along `dim`, concatenated (shards padded to the largest)
at::Tensor all_gather_shards(const at::Tensor& x, int64_t dim, int64_t total, Comm& group) {
  const int64_t n = group.size(), most = sequence_shard(total, n, 0).size;
  auto parts = group.all_gather(pad_to(x, dim, most).contiguous());
  for (int64_t r = 0; r < n; ++r) parts[size_t(r)] = parts[size_t(r)].narrow(dim, 0, sequence_shard(total, n, r).size);
  return at::cat(parts, dim);
}
// the sum over the group of x (the whole sequence along dim), of which this rank keeps its shard:
// one reduce-scatter over the shards (padded to the largest) laid out along dim 0
at::Tensor reduce_scatter_shards(const at::Tensor& x, int64_t dim, Comm& group) {
  const int64_t n = group.size(), total = x.size(dim), most = sequence_shard(total, n, 0).size;
  auto t = x.movedim(dim, 0);
  std::vector<at::Tensor> blocks;
  for (int64_t r = 0; r < n; ++r) {
    auto s = sequence_shard(total, n, r);
    blocks.push_back(pad_to(t.narrow(0, s.begin, s.size), 0, most));
  }
  auto mine = group.reduce_scatter_sum(at::cat(blocks, 0)).narrow(0, 0, sequence_shard(total, n, group.rank()).size);
  return mine.movedim(0, dim).contiguous();
}
}  // namespace

// The gradient of this rank's shard from the gathered sequence's gradient g: summed (the
// consumers are split layers, their gradients partial per rank): reduce-scattered; else (whole on
// every rank) this rank's part of it.
at::Tensor shard_gradient(const at::Tensor& g, int64_t dim, int64_t total, Comm& c, bool summed) {
  if (summed) return reduce_scatter_shards(g, dim, c);
  auto part = sequence_shard(total, c.size(), c.rank());
  return g.narrow(dim, part.begin, part.size).contiguous();
}

// summed_backward: see shard_gradient.
struct GatherSequence : torch::autograd::Function<GatherSequence> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t dim, int64_t total, Comm* c,
                            bool summed_backward) {
    keep_comm(ctx, *c);
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["total"] = total;
    ctx->saved_data["summed"] = summed_backward;
    return all_gather_shards(x, dim, total, *c);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list g) {
    auto dx = shard_gradient(g[0], ctx->saved_data["dim"].toInt(), ctx->saved_data["total"].toInt(), *comm_of(ctx),
                             ctx->saved_data["summed"].toBool());
    return {dx, at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

struct ReduceScatterSequence : torch::autograd::Function<ReduceScatterSequence> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t dim, Comm* c) {
    keep_comm(ctx, *c);
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["total"] = x.size(dim);
    return reduce_scatter_shards(x, dim, *c);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list g) {
    return {all_gather_shards(g[0], ctx->saved_data["dim"].toInt(), ctx->saved_data["total"].toInt(), *comm_of(ctx)),
            at::Tensor(), at::Tensor()};
  }
};

// params: n weights [out_i, in], then n biases when with_bias. Saves this rank's shard of x (and
// the weights), not the gathered input: backward gathers it again for the weight gradients.
// summed_backward: the layers' input gradients are partial sums (split layers) or whole on every
// rank (replicated layers); see shard_gradient.
struct GatherSequenceLinears : torch::autograd::Function<GatherSequenceLinears> {
  static tensor_list forward(AutogradContext* ctx, const at::Tensor& x, int64_t dim, int64_t total, Comm* c,
                             at::TensorList params, bool with_bias, bool summed_backward) {
    keep_comm(ctx, *c);
    ctx->saved_data["dim"] = dim;
    ctx->saved_data["total"] = total;
    ctx->saved_data["with_bias"] = with_bias;
    ctx->saved_data["summed"] = summed_backward;
    const size_t n = with_bias ? params.size() / 2 : params.size();
    auto whole = all_gather_shards(x, dim, total, *c);
    tensor_list out;
    for (size_t i = 0; i < n; ++i) out.push_back(at::linear(whole, params[i], with_bias ? params[n + i] : at::Tensor()));
    tensor_list saved{x};
    for (size_t i = 0; i < n; ++i) saved.push_back(params[i]);
    ctx->save_for_backward(saved);
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list g) {
    auto* c = comm_of(ctx);
    const int64_t dim = ctx->saved_data["dim"].toInt(), total = ctx->saved_data["total"].toInt();
    const bool with_bias = ctx->saved_data["with_bias"].toBool();
    auto saved = ctx->get_saved_variables();
    const size_t n = saved.size() - 1;
    auto whole = all_gather_shards(saved[0], dim, total, *c);
    const int64_t in = whole.size(-1);
    auto rows = whole.reshape({-1, in});
    at::Tensor dwhole;
    tensor_list dw(n), db(n);
    for (size_t i = 0; i < n; ++i) {
      if (!g[i].defined()) continue;
      const auto& w = saved[i + 1];
      auto gi = g[i].reshape({-1, w.size(0)});
      auto d = at::matmul(g[i], w);
      dwhole = dwhole.defined() ? dwhole + d : d;
      dw[i] = at::mm(gi.t(), rows);
      if (with_bias) db[i] = gi.sum(0);
    }
    auto dx = dwhole.defined() ? shard_gradient(dwhole, dim, total, *c, ctx->saved_data["summed"].toBool())
                               : at::zeros_like(saved[0]);
    tensor_list r{dx, at::Tensor(), at::Tensor(), at::Tensor()};
    r.insert(r.end(), dw.begin(), dw.end());
    if (with_bias) r.insert(r.end(), db.begin(), db.end());
    r.push_back(at::Tensor());
    r.push_back(at::Tensor());
    return r;
  }
};

at::Tensor gather_sequence(const at::Tensor& x, int64_t dim, int64_t total, Comm& group) {
  return group.size() == 1 ? x : GatherSequence::apply(x, dim, total, &group, false);
}

at::Tensor gather_sequence_for_split(const at::Tensor& x, int64_t dim, int64_t total, Comm& group) {
  return group.size() == 1 ? x : GatherSequence::apply(x, dim, total, &group, true);
}

std::vector<at::Tensor> gather_sequence_linears(const at::Tensor& x, int64_t dim, int64_t total,
                                                const std::vector<at::Tensor>& weights,
                                                const std::vector<at::Tensor>& biases, Comm& group,
                                                bool split_layers) {
  GRPO_CHECK(!weights.empty() && (biases.empty() || biases.size() == weights.size()),
             "gather_sequence_linears: {} weights and {} biases (none, or one per weight)", weights.size(),
             biases.size());
  if (group.size() == 1) {
    std::vector<at::Tensor> out;
    for (size_t i = 0; i < weights.size(); ++i) out.push_back(at::linear(x, weights[i], biases.empty() ? at::Tensor() : biases[i]));
    return out;
  }
  std::vector<at::Tensor> params(weights);
  params.insert(params.end(), biases.begin(), biases.end());
  return GatherSequenceLinears::apply(x, dim, total, &group, at::TensorList(params), !biases.empty(), split_layers);
}

at::Tensor reduce_scatter_sequence(const at::Tensor& x, int64_t dim, Comm& group) {
  return group.size() == 1 ? x : ReduceScatterSequence::apply(x, dim, &group);
}

at::Tensor gather_dim(const at::Tensor& x, int64_t dim, Comm& group) {
  if (group.size() == 1) return x;
  at::NoGradGuard g;
  return at::cat(group.all_gather(x.detach().contiguous()), dim);
}

at::Tensor gather_last_dim(const at::Tensor& x, Comm& group) { return gather_dim(x, x.dim() - 1, group); }

at::Tensor all_to_all_rows(const at::Tensor& x, const std::vector<int64_t>& send_counts,
                           std::vector<int64_t>* recv_counts, Comm& group) {
  return AllToAllRows::apply(x, send_counts, recv_counts, &group);
}

}  // namespace grpo::dist
