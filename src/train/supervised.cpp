// The supervised stages, before GRPO. Both train on the masked mean log-loss of demonstrations;
// under data parallelism each rank takes a contiguous share of every batch.
//   pretrain stage (pretrain_step): built-in task demonstrations (data/arithmetic.h), imperfect on
//                               purpose, so that GRPO has something to improve;
//   SFT stage (sft_step):       a JSONL file of question/response pairs, optionally packed.
#include <algorithm>
#include <chrono>

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "grpo/core/error.h"
#include "grpo/core/progress.h"
#include "grpo/dist/comm.h"
#include "session.h"

namespace grpo::train {
namespace {

// This rank's examples [lo, hi) of a batch of B.
std::pair<int64_t, int64_t> shard(const Session& s, int64_t B) {
  return {B * s.comm->rank() / s.comm->size(), B * (s.comm->rank() + 1) / s.comm->size()};
}

// The masked mean log-loss of a supervised batch split over ranks: this rank's sum over the
// token count of the whole batch; backward, gradients summed over ranks. Returns the loss.
double supervised_update(Session& s, const at::Tensor& logprobs, const at::Tensor& mask, double share) {
  auto total = mask.sum().to(at::kDouble).reshape({1});
  s.comm->all_reduce_sum(total);
  auto loss = s.with_balance_loss(-(logprobs * mask).sum() / std::max(1.0, total.item<double>()), share);
  s.arm_gradient_overlap();
  loss.backward();
  double value = loss.item<double>();
  if (s.comm->size() > 1) {
    s.all_reduce_gradients();
    std::vector<double> v{value};
    s.reduce(v, false);
    value = v[0];
  }
  return value;
}

// Log-probs of tokens[:, 1:] after tokens[:, :-1] (positions and segments optional), on the CPU.
at::Tensor next_token_logprobs(Session& s, const at::Tensor& tokens, const at::Tensor& pos, const at::Tensor& seg) {
  const int64_t L = tokens.size(1);
  auto hidden = s.policy->forward(s.on_device(tokens.narrow(1, 0, L - 1)), s.on_device(pos), s.on_device(seg));
  model::LogProbOptions o;
  o.with_entropy = false;
  return Session::on_cpu(s.policy->token_logprobs(hidden, s.on_device(tokens.narrow(1, 1, L - 1)), o)).logprobs;
}

}  // namespace

// One optimizer step on pretrain.batch_size demonstrations: prompt + demonstration + EOS, loss on
// the demonstration's tokens but for a tool's observations.
void pretrain_step(Session& s) {
  auto t0 = Clock::now();
  const auto& cfg = s.cfg;
  auto& st = s.st;
  const int64_t B = cfg.pretrain.batch_size;
  const auto [lo, hi] = shard(s, B);  // data parallel: this rank's demonstrations
  std::vector<std::vector<int64_t>> seqs;
  std::vector<std::vector<bool>> trained;  // per token: in the loss (observations are not)
  int64_t L = 0;
  for (int64_t j = lo; j < hi; ++j) {
    auto p = s.questions->task()->train_problem(st.pretrain_position + j, core::Stream::kPretrainData);
    auto demo = s.questions->task()->demonstration_pieces(
        p, core::hash_key({uint64_t(core::Stream::kPretrainData), uint64_t(cfg.run.seed),
                           uint64_t(st.pretrain_step), uint64_t(j)}));
    auto ids = s.questions->prompt_ids({p.question, p.answer, ""});
    std::vector<bool> in_loss(ids.size(), false);
    auto d = data::tokenize_demonstration(*s.tok, demo);  // no loss on a tool's observations
    ids.insert(ids.end(), d.ids.begin(), d.ids.end());
    in_loss.insert(in_loss.end(), d.trained.begin(), d.trained.end());
    ids.push_back(s.tok->eos_id());
    in_loss.push_back(true);
    L = std::max<int64_t>(L, ids.size());
    seqs.push_back(std::move(ids));
    trained.push_back(std::move(in_loss));
  }
  const int64_t Bl = hi - lo;
  auto tokens = at::full({Bl, std::max<int64_t>(L, 2)}, s.tok->pad_id(), at::kLong);
  L = tokens.size(1);
  auto mask = at::zeros({Bl, L - 1}, at::kFloat);
  auto ta = tokens.accessor<int64_t, 2>();
  auto ma = mask.accessor<float, 2>();
  for (int64_t i = 0; i < Bl; ++i) {
    for (size_t t = 0; t < seqs[i].size(); ++t) ta[i][t] = seqs[i][t];
    for (size_t t = 1; t < seqs[i].size(); ++t) ma[i][int64_t(t) - 1] = trained[i][t];  // predicts token t
  }
  at::Tensor real;  // an MoE model's statistics count the tokens that predict a real token
  if (!s.policy->moe_layers().empty()) {
    real = at::zeros({Bl, L - 1}, at::kBool);
    for (int64_t i = 0; i < Bl; ++i) real[i].narrow(0, 0, int64_t(seqs[i].size()) - 1).fill_(true);  // with a target
  }
  s.policy->train(true);
  s.optimizer->zero_grad();
  auto lp = next_token_logprobs(s, tokens, {}, real);
  const double loss = supervised_update(s, lp, mask, double(Bl) / double(B));
  if (s.update_is_finite(loss, 0.0, fmt::format("pretrain step {}", st.pretrain_step + 1))) {
    s.optimizer->step();
    s.after_optimizer_step();
  }
  ++st.pretrain_step;
  st.pretrain_position += B;
  nlohmann::json j = {{"stage", "pretrain"}, {"step", st.pretrain_step}, {"loss", loss},
                      {"time_step", seconds_since(t0)}};
  s.write_metrics(j);
  if (core::Progress::instance().live())
    core::Progress::instance().step(st.pretrain_step, fmt::format("loss {:.4f}", loss));
  else if (st.pretrain_step % (cfg.run.log_every * 50) == 0 || st.pretrain_step == cfg.pretrain.steps)
    spdlog::info("pretrain {:>4}/{} | loss {:.4f}", st.pretrain_step, cfg.pretrain.steps, loss);
}

// One optimizer step on sft.batch_size demonstrations: prompt (formatted as in training) +
// response + EOS, loss = mean log-loss over the response tokens. With packing, examples share
// rows of at most max_position_embeddings tokens, each attending only to itself (segment ids).
void sft_step(Session& s) {
  auto t0 = Clock::now();
  const auto& cfg = s.cfg;
  auto& st = s.st;
  const int64_t B = cfg.sft.batch_size, W = cfg.model.max_position_embeddings;
  struct Ex {
    std::vector<int64_t> ids;
    int64_t prompt_len;
  };
  std::vector<Ex> exs;
  const auto [lo, hi] = shard(s, B);  // data parallel: this rank's examples
  for (int64_t j = lo; j < hi; ++j) {
    const auto& e = s.questions->sft_data().sample(st.sft_position + j);
    Ex x;
    if (e.system.empty()) {
      x.ids = s.questions->prompt_ids({e.prompt, "", fmt::format("{}:{}", cfg.sft.data, e.line)});
    } else {  // a chat line's own system message
      GRPO_CHECK(cfg.prompt.chat != "none", "{}:{}: a system message needs a chat format (prompt.chat)",
                 cfg.sft.data, e.line);
      x.ids = s.questions->prompt_ids_with_system(e.prompt, e.system);
    }
    x.prompt_len = int64_t(x.ids.size());
    auto r = s.tok->encode(e.answer);
    x.ids.insert(x.ids.end(), r.begin(), r.end());
    x.ids.push_back(s.tok->eos_id());
    GRPO_CHECK(int64_t(x.ids.size()) <= W, "{}:{}: prompt + response is {} tokens, more than "
               "model.max_position_embeddings {}", cfg.sft.data, e.line, x.ids.size(), W);
    exs.push_back(std::move(x));
  }
  // rows: each a list of examples (first fit in order when packing)
  std::vector<std::vector<size_t>> rows;
  std::vector<int64_t> used;
  for (size_t k = 0; k < exs.size(); ++k) {
    const int64_t n = int64_t(exs[k].ids.size());
    size_t r = rows.size();
    if (cfg.sft.packing)
      for (size_t q = 0; q < rows.size(); ++q)
        if (used[q] + n <= W) {
          r = q;
          break;
        }
    if (r == rows.size()) rows.emplace_back(), used.push_back(0);
    rows[r].push_back(k);
    used[r] += n;
  }
  const int64_t R = int64_t(rows.size()), L = *std::max_element(used.begin(), used.end());
  auto tokens = at::full({R, L}, s.tok->pad_id(), at::kLong);
  auto seg = at::zeros({R, L}, at::kLong), pos = at::zeros({R, L}, at::kLong);
  auto mask = at::zeros({R, L}, at::kFloat);  // mask[t] = 1: token t+1 is a response token
  auto ta = tokens.accessor<int64_t, 2>(), sa = seg.accessor<int64_t, 2>(), pa = pos.accessor<int64_t, 2>();
  auto ma = mask.accessor<float, 2>();
  for (int64_t r = 0; r < R; ++r) {
    int64_t off = 0, id = 0;
    for (size_t k : rows[size_t(r)]) {
      const auto& x = exs[k];
      ++id;
      for (int64_t t = 0; t < int64_t(x.ids.size()); ++t) {
        ta[r][off + t] = x.ids[size_t(t)];
        sa[r][off + t] = id;
        pa[r][off + t] = t;
        if (t >= x.prompt_len - 1 && t + 1 < int64_t(x.ids.size())) ma[r][off + t] = 1;
      }
      off += int64_t(x.ids.size());
    }
  }
  s.policy->train(true);
  s.optimizer->zero_grad();
  // an example's last token predicts nothing: segment 0 (it attends to itself, unused), so an MoE
  // model's statistics count each example's tokens alike however the rows were packed
  auto in_seg = seg.narrow(1, 0, L - 1) * seg.narrow(1, 0, L - 1).eq(seg.narrow(1, 1, L - 1));
  auto lp = next_token_logprobs(s, tokens, pos.narrow(1, 0, L - 1), in_seg);
  auto m = mask.narrow(1, 0, L - 1);
  const double loss = supervised_update(s, lp, m, double(hi - lo) / double(B));
  const double norm = cfg.optim.grad_clip > 0 ? s.optimizer->clip_gradients(cfg.optim.grad_clip) : 0.0;
  if (s.update_is_finite(loss, norm, fmt::format("sft step {}", st.sft_step + 1))) {
    s.optimizer->step();
    s.after_optimizer_step();
  }
  ++st.sft_step;
  st.sft_position += B;
  std::vector<double> counts{double(R), m.sum().item<double>()};
  if (s.comm->size() > 1) s.reduce(counts, false);
  nlohmann::json j = {{"stage", "sft"},          {"step", st.sft_step},
                      {"loss", loss},            {"rows", int64_t(counts[0])},
                      {"tokens", int64_t(counts[1])}, {"time_step", seconds_since(t0)}};
  s.write_metrics(j);
  if (core::Progress::instance().live())
    core::Progress::instance().step(st.sft_step, fmt::format("loss {:.4f} | {} examples in {} rows", loss, B,
                                                             int64_t(counts[0])));
  else if (st.sft_step % (cfg.run.log_every * 20) == 0 || st.sft_step == cfg.sft.steps)
    spdlog::info("sft  {:>4}/{} | loss {:.4f} | {} examples in {} rows", st.sft_step, cfg.sft.steps, loss, B,
                 int64_t(counts[0]));
}

}  // namespace grpo::train
