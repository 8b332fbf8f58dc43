// The rollout engine: continuous batching over a paged KV cache with prefix sharing and
// preemption by recomputation (generate.h has the contract).
//
// Each sequence carries ids = its prompt and the tokens generated so far; the cache stores some
// prefix of them. A step runs
//   1. admission: waiting sequences, first come first served, while the running ones number at
//      most max_running and the pool has blocks for the newcomer's whole prefill;
//   2. the plan: every running sequence with one token to store decodes it; the others (prompts,
//      recomputations) get prefill chunks from the step's budget of prefill_chunk_tokens. If the
//      pool cannot hold the step, the latest admitted sequences are preempted (their blocks freed,
//      back to the front of the queue) until it can;
//   3. a prefill forward and a decode forward (each only when it has rows);
//   4. sampling, for every sequence whose ids are now all stored: token t = (ids - prompt) drawn
//      with its key. A group's shared prompt forks into its G samples here.
// A group of G samples enters as one sequence holding the prompt (prefix sharing), and leaves the
// queue as G samples sharing its blocks; a preempted sample comes back alone, with its tokens.
// Multi-turn (GenerateRequest::turns): a sample whose turn ends is parked, outside the running
// batch, with its blocks; its observation's ids are appended when they arrive and it queues again
// (its pending ids are then prefilled like a prompt's). Short of blocks, a parked sample's cache
// is dropped first (it is recomputed when it comes back).
#include <algorithm>
#include <cmath>
#include <deque>
#include <map>
#include <numeric>

#include <ATen/ATen.h>

#include "batch_builder.h"
#include "grpo/core/error.h"
#include "grpo/core/profile.h"
#include "grpo/dist/comm.h"
#include "grpo/model/kv_cache.h"
#include "grpo/model/transformer.h"
#include "grpo/rollout/generate.h"

namespace grpo::rollout {
namespace {

struct Seq {
  int64_t row = 0;    // output row (p * G + g); a shared prompt: its group's first row
  int64_t group = 1;  // > 1: a group's shared prompt, forking into `group` samples once stored
  int64_t prompt_len = 0;
  std::vector<int64_t> ids;  // prompt + generated tokens
  int64_t cache = -1;        // PagedKVCache sequence while running
  int64_t order = -1;        // admission order (kept through preemption)
  std::vector<int16_t> route = {};  // GenerateRequest::record_routing: [stored tokens][moe layers][top_k] experts
};

class Engine {
 public:
  Engine(model::Transformer& model, const GenerateRequest& req, RolloutBatch& out)
      : model_(model), req_(req), out_(out), lockstep_(model.lockstep_group()), dev_(model.device()) {
    if (out.routing.defined()) moe_layers_ = model.moe_layers(), top_k_ = out.routing.size(3);
  }

  void run() {
    const int64_t G = req_.group_size, NP = int64_t(req_.prompts.size()), N = NP * G;
    const auto& sp = req_.sampling;
    max_running_ = sp.max_running > 0 ? std::min<int64_t>(sp.max_running, std::max<int64_t>(N, 1)) : std::max<int64_t>(N, 1);
    // a group is admitted whole, so sharing needs room for G samples at once
    const bool share = sp.prefix_sharing && G > 1 && G <= max_running_;
    for (int64_t p = 0; p < NP; ++p) {
      const auto& prompt = req_.prompts[size_t(p)];
      for (int64_t g = 0; g < (share ? 1 : G); ++g)
        waiting_.push_back(Seq{p * G + g, share ? G : 1, int64_t(prompt.size()), prompt});
    }
    if (N > 0) make_pool();
    while (true) {
      if (req_.between_steps) version_ = req_.between_steps();  // an in-flight weight update, if any
      if (!parked_.empty()) resume(req_.turns->ready(false));
      if (cache_) admit();
      Plan plan;
      if (cache_) plan = make_plan();
      // lock step: every rank runs a prefill forward if any has one, and a decode forward likewise
      int64_t flags[3] = {!plan.prefill.empty(), !plan.decode.empty(),
                          !running_.empty() || !waiting_.empty() || !parked_.empty()};
      if (lockstep_) {
        auto f = at::tensor(std::vector<int64_t>(flags, flags + 3), at::kLong);
        lockstep_->all_reduce_max(f);
        for (int i = 0; i < 3; ++i) flags[i] = f[i].item<int64_t>();
      }
      if (!flags[2]) break;
      if (!flags[0] && !flags[1]) {  // every sequence waits for its environment
        if (!parked_.empty()) resume(req_.turns->ready(true));
        continue;
      }
      ++out_.stats.steps;
      if (flags[0]) step(plan.prefill, /*prefill=*/true);
      if (flags[1]) step(plan.decode, /*prefill=*/false);
    }
    if (cache_) {
      out_.stats.peak_kv_bytes = double(cache_->peak_blocks_in_use()) * double(cache_->bytes_per_block());
      out_.stats.kv_bytes_allocated = double(cache_->bytes_allocated());
    }
  }

 private:
  struct Row {
    size_t seq;  // index into running_
    int64_t n;   // tokens it stores this step
  };
  struct Plan {
    std::vector<Row> prefill, decode;
  };

  // The pool: sampling.kv_cache_bytes, or what max_running full-length sequences need.
  void make_pool() {
    const auto& sp = req_.sampling;
    const int64_t bs = sp.kv_block_size;
    int64_t longest = 0;
    for (const auto& p : req_.prompts) longest = std::max<int64_t>(longest, int64_t(p.size()));
    const int64_t per_seq = (longest + sp.max_new_tokens + bs - 1) / bs;
    const int64_t block_bytes = model::PagedKVCache::block_bytes(model_.cache_shape(), bs,
                                                                 model_.lm_head_weight().element_size());
    int64_t blocks = max_running_ * per_seq;
    if (sp.kv_cache_bytes > 0) {
      blocks = int64_t(std::floor(sp.kv_cache_bytes / double(block_bytes)));
      // one sequence of full length, plus a copy of a shared last block
      GRPO_CHECK(blocks >= per_seq + 1,
                 "rollout.kv_cache_bytes {} holds {} blocks of {} tokens ({} bytes each); the longest "
                 "sequence (prompt {} + max_new_tokens {}) needs {} (+1 for copy-on-write): raise "
                 "rollout.kv_cache_bytes to at least {}",
                 sp.kv_cache_bytes, blocks, bs, block_bytes, longest, sp.max_new_tokens, per_seq,
                 (per_seq + 1) * block_bytes);
    }
    cache_ = model_.make_paged_cache(bs, blocks);
  }

  int64_t running_count() const {
    int64_t n = 0;
    for (const auto& s : running_) n += s.group;
    return n;
  }

  // Blocks a fresh sequence of n tokens takes.
  int64_t blocks_for(int64_t n) const { return (n + cache_->block_size() - 1) / cache_->block_size(); }

  void admit() {
    int64_t count = running_count();
    // blocks the running sequences need for their next token come first
    int64_t reserved = 0;
    for (const auto& s : running_) reserved += cache_->blocks_needed(s.cache, 1);
    while (!waiting_.empty()) {
      auto& w = waiting_.front();
      if (count + w.group > max_running_) break;
      // a sample back from its environment may still hold its blocks: it needs those of its observation
      const int64_t need = w.cache >= 0 ? cache_->blocks_needed(w.cache, int64_t(w.ids.size()) - cache_->stored(w.cache))
                                        : blocks_for(int64_t(w.ids.size())) + (w.group > 1 ? w.group - 1 : 0);
      if (!running_.empty() && need + reserved > cache_->free_blocks()) break;
      if (w.cache < 0) w.cache = cache_->add_sequence();
      if (w.order < 0) w.order = next_order_++;
      count += w.group;
      reserved += need;
      running_.push_back(std::move(w));
      waiting_.pop_front();
    }
  }

  Plan make_plan() {
    while (true) {
      Plan plan;
      int64_t budget = req_.sampling.prefill_chunk_tokens, need = 0;
      for (size_t i = 0; i < running_.size(); ++i) {
        const auto& s = running_[i];
        const int64_t pending = int64_t(s.ids.size()) - cache_->stored(s.cache);
        GRPO_ASSERT(pending >= 1);
        if (pending == 1) {
          plan.decode.push_back({i, 1});
        } else if (budget > 0) {
          plan.prefill.push_back({i, std::min(pending, budget)});
          budget -= plan.prefill.back().n;
        } else {
          continue;
        }
      }
      for (const auto* rows : {&plan.prefill, &plan.decode})
        for (const auto& r : *rows) need += cache_->blocks_needed(running_[r.seq].cache, r.n);
      if (need <= cache_->free_blocks()) return plan;
      if (!drop_parked_cache()) preempt_latest();
    }
  }

  // Frees the blocks of a sample that is not running but holds some: one waiting for its
  // environment, else one back from it and queued (the latest admitted); false when none is.
  bool drop_parked_cache() {
    auto drop = [&](Seq& s) {
      cache_->free(s.cache);
      s.cache = -1;
      out_.stats.preemptions += 1;
      return true;
    };
    for (auto& [row, s] : parked_)
      if (s.cache >= 0) return drop(s);
    for (auto it = waiting_.rbegin(); it != waiting_.rend(); ++it)
      if (it->cache >= 0) return drop(*it);
    return false;
  }

  // Observations back from the environments: appended to their samples, which queue again in
  // admission order; an episode that ends, or runs out of max_new_tokens, finishes its row.
  void resume(std::vector<TurnHandler::Reply> replies) {
    for (auto& r : replies) {
      auto it = parked_.find(r.row);
      GRPO_CHECK(it != parked_.end(), "rollout engine: an environment replied for row {}, which waits for none", r.row);
      Seq s = std::move(it->second);
      parked_.erase(it);
      // the observation goes in first: a done episode's last observation is part of its transcript
      bool alive = true;
      for (size_t k = 0; alive && k < r.ids.size(); ++k) {
        alive = detail::record_observation(out_, req_, s.row, int64_t(s.ids.size()) - s.prompt_len, r.ids[k]);
        if (alive) s.ids.push_back(r.ids[k]);
      }
      if (alive && (r.done || r.truncated)) {
        detail::finish_episode(out_, req_, s.row, r.truncated);
        alive = false;
      }
      if (!alive) {
        if (s.cache >= 0) cache_->free(s.cache);
        finish_routing(s, s.row);
        continue;
      }
      GRPO_CHECK(!r.ids.empty(), "rollout engine: an empty observation for row {} (the episode goes on, so the "
                 "model needs a token to continue from)", r.row);
      auto at = std::find_if(waiting_.begin(), waiting_.end(),
                             [&](const Seq& w) { return w.order < 0 || w.order > s.order; });
      waiting_.insert(at, std::move(s));
    }
  }

  // The latest admitted running sequence goes back to the front of the queue; it will be
  // recomputed (prefill of its prompt and tokens so far).
  void preempt_latest() {
    GRPO_CHECK(running_.size() > 1, "rollout engine: one sequence does not fit the KV cache pool ({} blocks)",
               cache_->max_blocks());
    size_t victim = 0;
    for (size_t i = 1; i < running_.size(); ++i)
      if (running_[i].order >= running_[victim].order) victim = i;
    Seq s = std::move(running_[victim]);
    running_.erase(running_.begin() + std::ptrdiff_t(victim));
    cache_->free(s.cache);
    s.cache = -1;
    out_.stats.preemptions += s.group;
    // the queue stays in admission order (never-admitted sequences have order -1 and come later)
    auto at = std::find_if(waiting_.begin(), waiting_.end(),
                           [&](const Seq& w) { return w.order < 0 || w.order > s.order; });
    waiting_.insert(at, std::move(s));
  }

  // One forward over `rows` (or an idle one when this rank has none), then sampling for the
  // sequences it completes.
  void step(const std::vector<Row>& rows, bool prefill) {
    if (rows.empty()) {
      model_.idle_forward();
      return;
    }
    const int64_t B = int64_t(rows.size());
    int64_t T = 0, past = 0;
    std::vector<int64_t> seqs, news;
    for (const auto& r : rows) {
      T = std::max(T, r.n);
      past = std::max(past, cache_->stored(running_[r.seq].cache));
      seqs.push_back(running_[r.seq].cache);
      news.push_back(r.n);
    }
    const int64_t S = past + T;
    // left-padded new tokens; the mask marks each row's stored keys [0, stored) and its new ones
    std::vector<int64_t> ids(size_t(B * T), req_.pad_id), pos(size_t(B * T), 0);
    std::vector<uint8_t> mask(size_t(B * S), 0);
    std::vector<int64_t> done;  // batch rows whose sequence is then fully stored
    std::vector<int64_t> stored_before(static_cast<size_t>(B));
    for (int64_t i = 0; i < B; ++i) {
      const auto& s = running_[rows[size_t(i)].seq];
      const int64_t n = rows[size_t(i)].n, stored = cache_->stored(s.cache);
      stored_before[size_t(i)] = stored;
      for (int64_t j = 0; j < n; ++j) {
        ids[size_t(i * T + T - n + j)] = s.ids[size_t(stored + j)];
        pos[size_t(i * T + T - n + j)] = stored + j;
        mask[size_t(i * S + past + T - n + j)] = 1;
      }
      std::fill_n(mask.begin() + i * S, stored, uint8_t(1));
      if (stored + n == int64_t(s.ids.size())) done.push_back(i);
    }
    const int64_t new_tokens = std::accumulate(news.begin(), news.end(), int64_t(0));
    at::Tensor logits;
    {
      core::StageTimer timer(prefill ? core::Stage::kPrefill : core::Stage::kDecode);
      if (timer.on()) {
        double attended = 0, read = 0;
        for (size_t i = 0; i < seqs.size(); ++i) {
          const double stored = double(cache_->stored(seqs[i])), n = double(news[i]);
          attended += n * stored + n * (n + 1) / 2, read += stored + n;
        }
        timer.work(model_.forward_work(double(new_tokens), double(done.size()), attended, read, double(new_tokens)));
      }
      cache_->begin_step(seqs, news);
      auto to_dev = [&](at::Tensor t) { return t.to(dev_); };
      auto hidden = model_.forward(to_dev(at::from_blob(ids.data(), {B, T}, at::kLong)),
                                   to_dev(at::from_blob(pos.data(), {B, T}, at::kLong)),
                                   to_dev(at::from_blob(mask.data(), {B, S}, at::kByte).to(at::kBool)), cache_.get());
      ++out_.stats.forwards;
      (prefill ? out_.stats.prefill_tokens : out_.stats.decode_tokens) += new_tokens;
      if (!moe_layers_.empty()) record_routing(rows, stored_before, T);
      if (done.empty()) return;
      auto last = hidden.select(1, T - 1);
      if (int64_t(done.size()) < B) last = last.index_select(0, at::tensor(done, at::kLong).to(dev_));
      logits = model_.logits(last);  // [done, V]
    }
    core::StageTimer timer(core::Stage::kSampling);
    timer.work({0, double(logits.numel()) * double(logits.element_size())});  // the logits read once
    sample(rows, done, logits);
  }

  // The experts of the step's new tokens (left-padded: row i's n tokens are its last n columns),
  // at their positions in each sequence.
  void record_routing(const std::vector<Row>& rows, const std::vector<int64_t>& stored_before, int64_t T) {
    const int64_t L = int64_t(moe_layers_.size()), k = top_k_;
    std::vector<at::Tensor> idx;
    for (auto layer : moe_layers_) idx.push_back(model_.last_routing(layer).indices.to(at::kCPU, at::kLong).contiguous());
    for (size_t i = 0; i < rows.size(); ++i) {
      auto& s = running_[rows[i].seq];
      const int64_t n = rows[i].n, stored = stored_before[i];
      s.route.resize(size_t((stored + n) * L * k), -1);
      for (int64_t l = 0; l < L; ++l) {
        const int64_t* p = idx[size_t(l)].data_ptr<int64_t>();
        for (int64_t j = 0; j < n; ++j)
          for (int64_t c = 0; c < k; ++c)
            s.route[size_t(((stored + j) * L + l) * k + c)] = int16_t(p[(int64_t(i) * T + T - n + j) * k + c]);
      }
    }
  }

  // A completed row's experts into the batch, in its token columns.
  void finish_routing(const Seq& s, int64_t row) {
    if (moe_layers_.empty()) return;
    const int64_t L = int64_t(moe_layers_.size()), k = top_k_, positions = int64_t(s.route.size()) / (L * k);
    auto dst = out_.routing[row].narrow(0, out_.prompt_width - s.prompt_len, positions);
    dst.copy_(at::from_blob(const_cast<int16_t*>(s.route.data()), {positions, L, k}, at::kShort));
  }

  void sample(const std::vector<Row>& rows, const std::vector<int64_t>& done, const at::Tensor& logits) {
    // one draw per output row: a shared prompt's logits serve its G samples
    std::vector<int64_t> source, out_rows;
    std::vector<float> u;
    for (size_t k = 0; k < done.size(); ++k) {
      const auto& s = running_[rows[size_t(done[k])].seq];
      const int64_t t = int64_t(s.ids.size()) - s.prompt_len;
      for (int64_t g = 0; g < s.group; ++g) {
        source.push_back(int64_t(k));
        out_rows.push_back(s.row + g);
        u.push_back(detail::token_uniform(req_, s.row + g, t));
      }
    }
    auto l = int64_t(source.size()) == logits.size(0) ? logits : logits.index_select(0, at::tensor(source, at::kLong).to(dev_));
    auto drawn = sample_tokens(l, at::tensor(u, at::kFloat).to(dev_), req_.sampling);
    auto tok = drawn.tokens.cpu().contiguous();
    auto lp = drawn.logprobs.cpu().contiguous();
    const int64_t* tk = tok.data_ptr<int64_t>();
    const float* lpp = lp.data_ptr<float>();

    // new samples of forked groups, then the running list without finished sequences
    std::vector<Seq> next;
    std::vector<bool> is_done(running_.size(), false);
    for (auto i : done) is_done[rows[size_t(i)].seq] = true;
    size_t j = 0;  // index into the draws
    for (size_t i = 0; i < running_.size(); ++i) {
      Seq& s = running_[i];
      if (!is_done[i]) {
        next.push_back(std::move(s));
        continue;
      }
      const int64_t t = int64_t(s.ids.size()) - s.prompt_len;
      for (int64_t g = 0; g < s.group; ++g, ++j) {
        const int64_t row = s.row + g;
        if (detail::record_token(out_, req_, row, t, tk[j], lpp[j], version_)) {
          finish_routing(s, row);
          continue;
        }
        const bool continues = g == 0 && s.group == 1;  // the same sequence goes on: its vectors move over
        Seq sample{row, 1, s.prompt_len, continues ? std::move(s.ids) : s.ids,
                   continues ? s.cache : cache_->fork(s.cache), s.order, continues ? std::move(s.route) : s.route};
        sample.ids.push_back(tk[j]);
        if (req_.turns && req_.turns->ends_turn(row, out_.responses[size_t(row)])) {  // its environment's turn
          req_.turns->submit(row, out_.responses[size_t(row)]);
          parked_.emplace(row, std::move(sample));
          continue;
        }
        next.push_back(std::move(sample));
      }
      // a finished single sequence, or a group's shared prompt (its samples hold forks); a parked
      // sample keeps its cache
      const bool kept = (!next.empty() && next.back().cache == s.cache) ||
                        (s.group == 1 && parked_.count(s.row) && parked_.at(s.row).cache == s.cache);
      if (s.group > 1 || !kept) cache_->free(s.cache);
    }
    running_ = std::move(next);
  }

  model::Transformer& model_;
  const GenerateRequest& req_;
  RolloutBatch& out_;
  dist::Comm* lockstep_;
  at::Device dev_;
  int64_t max_running_ = 1, next_order_ = 0;
  int64_t version_ = 0;  // of the weights sampling now (GenerateRequest::between_steps)
  std::vector<int64_t> moe_layers_;  // record_routing: the MoE layers, and top-k
  int64_t top_k_ = 0;
  std::unique_ptr<model::PagedKVCache> cache_;
  std::deque<Seq> waiting_;
  std::vector<Seq> running_;
  std::map<int64_t, Seq> parked_;  // by row: samples whose environment is working on their turn
};

}  // namespace

RolloutBatch generate(model::Transformer& model, const GenerateRequest& req) {
  RolloutBatch out = detail::start_batch(model, req, model.lockstep_group() != nullptr);
  if (req.record_routing && !model.moe_layers().empty())
    out.routing = at::full({out.rows(), out.tokens.size(1), int64_t(model.moe_layers().size()),
                            model.config().num_experts_per_tok}, -1, at::kShort);
  at::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.train(false);
  try {
    Engine(model, req, out).run();
  } catch (...) {
    model.train(was_training);
    throw;
  }
  model.train(was_training);
  return out;
}

}  // namespace grpo::rollout
