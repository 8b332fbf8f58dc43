// Separate rollout ranks (parallel.rollout_ranks R): the last R processes of the job generate and
// score; the others train. Two channels connect the roles, each a c10d sub-group of its own so
// their collectives never wait on each other:
//
//   weights  trainer rank 0 (root) + the rollout ranks. After each update whose weights some
//            rollout step is to be generated with (grpo.max_staleness, generation_version), the
//            trainers send a header {version, kind, optimizer step, data position} and then every
//            parameter, each straight from a snapshot into the rollout model's own parameter of the
//            same name and layout (no file, no format conversion). Sent asynchronously: the
//            trainers go on training while the rollout ranks take the weights when they need them.
//   data     the trainers + the first rollout rank (root). Each rollout step's rows, sampling
//            log-probs, finish reasons and scores, serialized into one byte tensor (after a
//            gather over the rollout ranks) and sent asynchronously; every trainer takes its
//            share of the groups, placed as data parallelism places them.
//
// Both sides follow the same schedule (generation_version), so neither polls: rollout step m is
// generated with exactly the weights of version max(barrier, m - k), as in one process, and the
// trained results are those of the colocated run. Before the GRPO stage (while the trainers
// pretrain, or when they have nothing to train) the rollout ranks wait on a value in the job's
// rendezvous store rather than in a collective, which would time out. A rank that dies is an
// error on the others at their next collective (dist/comm.h names it).
#include <array>
#include <chrono>
#include <cstring>
#include <deque>
#include <functional>
#include <optional>
#include <thread>

#include <ATen/ATen.h>
#include <spdlog/spdlog.h>

#include "grpo/core/byte_stream.h"
#include "grpo/core/error.h"
#include "grpo/dist/comm.h"
#include "step_batch.h"

namespace grpo::train {

struct RolloutLink {
  std::unique_ptr<dist::Comm> data;     // the trainers, then the first rollout rank (the root, last)
  std::unique_ptr<dist::Comm> weights;  // trainer rank 0 (the root), then the rollout ranks
  int64_t trainers = 0, rollouts = 0;
  bool started = false, closed = false;  // trainers: the rollout ranks were told to start / to end
  int64_t last_sent = -1;                // trainers: the newest weights version sent
  struct Sent {                          // an asynchronous send: its tensors live until it completes
    std::vector<at::Tensor> tensors;
    std::vector<std::unique_ptr<dist::Comm::Pending>> pending;
    void wait() {
      for (auto& p : pending) p->wait();
    }
  };
  std::deque<Sent> in_flight;
  void wait_until(size_t most) {
    while (in_flight.size() > most) {
      in_flight.front().wait();
      in_flight.pop_front();
    }
  }
};

namespace {

constexpr const char* kStartKey = "grpo/rollout_ranks/start";
enum Kind : int64_t { kWeights = 0, kFinal = 1, kStop = 2 };

struct Header {
  int64_t version = 0, kind = kWeights, optimizer_step = 0, data_position = 0;
  int64_t until = 0;  // a stop: the rollout steps before it are still to be generated and sent
};

// ---------------------------------------------------------------- serialization
// core/byte_stream.h, plus tensors: what a rollout rank sends is what the trainers read back.
class Writer : public core::ByteWriter {
 public:
  void tensor(const at::Tensor& t) {
    auto c = t.contiguous().cpu();
    i64(int64_t(c.scalar_type()));
    i64(c.dim());
    for (auto d : c.sizes()) i64(d);
    raw(c.data_ptr(), size_t(c.numel()) * c.element_size());
  }
};

class Reader : public core::ByteReader {
 public:
  Reader(const uint8_t* p, size_t n) : ByteReader(p, n, "internal: a rollout rank's message") {}
  at::Tensor tensor() {
    const auto type = at::ScalarType(i64());
    std::vector<int64_t> sizes(static_cast<size_t>(i64()));
    for (auto& d : sizes) d = i64();
    auto t = at::empty(sizes, at::TensorOptions().dtype(type));
    raw(t.data_ptr(), size_t(t.numel()) * t.element_size());
    return t;
  }
};

// The statistics the generating side sums (reward workers, multi-turn episodes).
template <class Stats>
auto generation_sums(Stats& st) {
  return std::array{&st.reward_busy,   &st.reward_timeouts,   &st.env_episodes,           &st.env_turns,
                    &st.env_tool_calls, &st.env_tool_errors, &st.env_tool_timeouts,      &st.env_truncated,
                    &st.env_observation_tokens, &st.env_seconds, &st.env_with_tool};
}

void write_generated(Writer& w, const Generated& g) {
  const auto& sb = g.sb;
  for (int64_t v : {g.step, g.version, sb.NG, sb.max_new_tokens, sb.prompts_used, sb.groups_dropped, sb.rounds,
                    sb.samples_scored, sb.samples_failed})
    w.i64(v);
  w.i64(sb.batch.routing.defined());
  if (sb.batch.routing.defined()) w.tensor(sb.batch.routing);
  for (double v : {sb.reward_wait, g.time_rollout, g.time_reward, g.time_wait_weights})
    w.f64(v);
  for (const double* v : generation_sums(g.stats)) w.f64(*v);
  w.str(sb.failure);
  const auto& b = sb.batch;
  w.i64(b.group_size);
  w.i64(b.prompt_width);
  for (const auto* t : {&b.tokens, &b.attention_mask, &b.response_mask, &b.sampling_logprobs, &b.token_versions,
                        &sb.global_rows})
    w.tensor(*t);
  w.i64(b.rows());
  for (int64_t i = 0; i < b.rows(); ++i) {
    w.i64(int64_t(b.finish[size_t(i)]));
    w.i64(int64_t(b.responses[size_t(i)].size()));
    for (auto id : b.responses[size_t(i)]) w.i64(id);
    const auto& r = sb.scored[size_t(i)];
    w.f64(r.total);
    w.i64(int64_t(r.parts.size()));
    for (const auto& [name, v] : r.parts) w.str(name), w.f64(v);
    w.i64(int64_t(r.failed.size()));
    for (const auto& f : r.failed) w.str(f);
  }
}

Generated read_generated(Reader& rd) {
  Generated g;
  auto& sb = g.sb;
  g.step = rd.i64(), g.version = rd.i64(), sb.NG = rd.i64(), sb.max_new_tokens = rd.i64();
  sb.prompts_used = rd.i64(), sb.groups_dropped = rd.i64(), sb.rounds = rd.i64();
  sb.samples_scored = rd.i64(), sb.samples_failed = rd.i64();
  if (rd.i64()) sb.batch.routing = rd.tensor();
  sb.reward_wait = rd.f64(), g.time_rollout = rd.f64(), g.time_reward = rd.f64(), g.time_wait_weights = rd.f64();
  for (double* v : generation_sums(g.stats)) *v = rd.f64();
  sb.failure = rd.str();
  auto& b = sb.batch;
  b.group_size = rd.i64();
  b.prompt_width = rd.i64();
  b.tokens = rd.tensor(), b.attention_mask = rd.tensor(), b.response_mask = rd.tensor();
  b.sampling_logprobs = rd.tensor(), b.token_versions = rd.tensor(), sb.global_rows = rd.tensor();
  const int64_t rows = rd.i64();
  for (int64_t i = 0; i < rows; ++i) {
    b.finish.push_back(rollout::FinishReason(rd.i64()));
    b.responses.emplace_back(size_t(rd.i64()));
    for (auto& id : b.responses.back()) id = rd.i64();
    reward::RewardResult r;
    r.total = rd.f64();
    for (int64_t n = rd.i64(); n > 0; --n) {
      auto name = rd.str();
      r.parts[name] = rd.f64();
    }
    for (int64_t n = rd.i64(); n > 0; --n) r.failed.push_back(rd.str());
    sb.scored.push_back(std::move(r));
  }
  return g;
}

at::Tensor to_bytes(const std::string& s) {
  auto t = at::empty({int64_t(s.size())}, at::kByte);
  if (!s.empty()) std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}

// ---------------------------------------------------------------- weights
// Whether some rollout step is generated with weights `version` (after the first, sent at the start).
bool needed(const Session& s, int64_t version) {
  for (int64_t m = version; m < s.cfg.grpo.rollout_steps && m <= version + s.cfg.grpo.max_staleness; ++m)
    if (generation_version(s, m) == version) return true;
  return false;
}

// Trainers: the weights of `version` (the policy's now) with a header of `kind`. Collective over
// the trainers when their layout splits the model (the whole tensors are gathered first).
void send_weights(Session& s, int64_t version, Kind kind, int64_t until = 0) {
  auto& link = *s.rollout_link;
  link.last_sent = version;
  // (a stop carries weights too: a rollout rank may have posted its receive of the next version)
  const auto params =
      s.groups.layout.tp * s.groups.layout.ep > 1 ? s.policy->full_parameters() : s.policy->named_parameters();
  if (!s.leader()) return;  // trainer rank 0 holds the weights channel
  RolloutLink::Sent sent;
  sent.tensors.push_back(
      at::tensor({version, int64_t(kind), s.st.optimizer_step, s.st.data_position, until}, at::kLong));
  {
    at::NoGradGuard ng;
    for (auto& [name, p] : params) sent.tensors.push_back(p.detach().clone(at::MemoryFormat::Contiguous));
  }
  for (auto& t : sent.tensors) sent.pending.push_back(link.weights->broadcast_async(t, 0));
  link.in_flight.push_back(std::move(sent));
  // the rollout ranks take at most k + 1 versions ahead of use: a longer queue means they are gone
  link.wait_until(size_t(s.cfg.grpo.max_staleness) + 2);
}

// Rollout ranks: the trainers' messages, each a header and the weights. Taken blocking, straight
// into the policy's parameters; or, with in-flight updates, received in the background into a copy
// and moved into the parameters between engine steps once complete.
class WeightsInbox {
 public:
  WeightsInbox(Session& s) : s_(s), link_(*s.rollout_link), inflight_(s.cfg.parallel.inflight_weight_updates) {}
  // The next message, waiting for it.
  Header next() {
    if (!inflight_) return receive_in_place();
    if (pending_.empty()) post();
    return take();
  }
  // With in-flight updates: the next message if it has arrived (its weights now the policy's).
  std::optional<Header> poll() {
    if (!inflight_ || pending_.empty()) return std::nullopt;
    for (auto& p : pending_)
      if (!p->ready()) return std::nullopt;
    return take();
  }

 private:
  Header read(const at::Tensor& h) {
    return {h[0].item<int64_t>(), h[1].item<int64_t>(), h[2].item<int64_t>(), h[3].item<int64_t>(),
            h[4].item<int64_t>()};
  }
  Header receive_in_place() {
    auto h = at::empty({5}, at::kLong);
    link_.weights->broadcast(h, 0);
    at::NoGradGuard ng;
    for (auto& [name, p] : s_.policy->named_parameters()) {
      GRPO_CHECK(p.is_contiguous(), "internal: parameter '{}' is not contiguous", name);
      link_.weights->broadcast(p, 0);
    }
    return read(h);
  }
  void post() {
    if (staging_.empty()) {
      staging_.push_back(at::empty({5}, at::kLong));
      for (auto& [name, p] : s_.policy->named_parameters()) staging_.push_back(at::empty_like(p));
    }
    for (auto& t : staging_) pending_.push_back(link_.weights->broadcast_async(t, 0));
  }
  Header take() {
    for (auto& p : pending_) p->wait();
    pending_.clear();
    const Header h = read(staging_[0]);
    if (h.kind != kStop) {
      at::NoGradGuard ng;
      auto params = s_.policy->named_parameters();
      for (size_t i = 0; i < params.size(); ++i) params[i].second.copy_(staging_[i + 1]);
    }
    if (h.kind == kWeights) post();  // the next version, in the background
    return h;
  }

  Session& s_;
  RolloutLink& link_;
  bool inflight_;
  std::vector<at::Tensor> staging_;  // the header, then every parameter
  std::vector<std::unique_ptr<dist::Comm::Pending>> pending_;
};

}  // namespace

// ---------------------------------------------------------------- trainers
void connect_rollout_link(Session& s) {
  auto& job = *s.job;
  const int64_t W = job.size(), R = s.cfg.parallel.rollout_ranks, T = W - R, r = job.rank();
  auto link = std::make_shared<RolloutLink>();
  link->trainers = T, link->rollouts = R;
  std::vector<int64_t> data_ranks, weight_ranks{0};
  for (int64_t k = 0; k <= T; ++k) data_ranks.push_back(k);
  for (int64_t k = T; k < W; ++k) weight_ranks.push_back(k);
  if (r <= T) link->data = job.group(data_ranks, "rollout_ranks/data");
  if (r == 0 || r >= T) link->weights = job.group(weight_ranks, "rollout_ranks/weights");
  s.rollout_link = std::move(link);
}

void start_rollout_ranks(Session& s) {
  auto& link = *s.rollout_link;
  GRPO_ASSERT(!link.started && !link.closed);
  link.started = true;
  if (s.leader()) s.job->publish(kStartKey, "grpo");
  send_weights(s, s.st.rollout_step, kWeights);
}

void publish_weights(Session& s, int64_t version) {
  if (needed(s, version)) send_weights(s, version, kWeights);
}

Generated receive_generated(Session& s, int64_t step) {
  auto& link = *s.rollout_link;
  const int64_t root = link.trainers;  // the first rollout rank, last in the data group
  auto len = at::empty({1}, at::kLong);
  link.data->broadcast(len, root);
  auto bytes = at::empty({len.item<int64_t>()}, at::kByte);
  link.data->broadcast(bytes, root);
  Reader rd(bytes.data_ptr<uint8_t>(), size_t(bytes.numel()));
  std::vector<Generated> parts(size_t(rd.i64()));  // one per rollout rank
  for (auto& p : parts) p = read_generated(rd);
  GRPO_CHECK(rd.done() && !parts.empty() && parts[0].step == step,
             "internal: the rollout ranks sent rollout step {} where step {} was due", parts.empty() ? -1 : parts[0].step,
             step);
  // this trainer's share of the step's groups, in the global row order, as data parallelism splits them
  const auto& g = s.cfg.grpo;
  Generated out;
  const auto& first = parts[0].sb;
  out.step = step, out.version = parts[0].version;
  out.time_rollout = parts[0].time_rollout, out.time_reward = parts[0].time_reward;
  out.time_wait_weights = parts[0].time_wait_weights;
  auto& sb = out.sb;
  sb.NG = first.NG, sb.max_new_tokens = first.max_new_tokens, sb.prompts_used = first.prompts_used;
  sb.groups_dropped = first.groups_dropped, sb.rounds = first.rounds;
  sb.samples_scored = first.samples_scored, sb.samples_failed = first.samples_failed;
  sb.reward_wait = first.reward_wait;
  std::vector<std::pair<int64_t, int64_t>> at_global(size_t(sb.NG), {-1, -1});  // (part, row) of each global row
  for (size_t p = 0; p < parts.size(); ++p) {
    const auto rows = parts[p].sb.global_rows.contiguous();
    const int64_t* rp = rows.data_ptr<int64_t>();
    for (int64_t i = 0; i < rows.numel(); ++i) at_global[size_t(rp[i])] = {int64_t(p), i};
    if (sb.failure.empty()) sb.failure = parts[p].sb.failure;
    if (s.comm->rank() == 0) {  // counted once when the trainers' statistics are summed
      auto to = generation_sums(out.stats), from = generation_sums(parts[p].stats);
      for (size_t k = 0; k < to.size(); ++k) *to[k] += *from[k];
    }
  }
  const int64_t G = g.group_size, groups = sb.NG / G, dp = s.comm->size(), me = s.comm->rank();
  const int64_t gb = groups * me / dp, ge = groups * (me + 1) / dp;
  std::vector<std::pair<int64_t, int64_t>> kept;  // (part, group within it)
  for (int64_t q = gb; q < ge; ++q) {
    auto [p, row] = at_global[size_t(q * G)];
    GRPO_CHECK(p >= 0, "internal: row {} of rollout step {} was sent by no rollout rank", q * G, step);
    kept.push_back({p, row / G});
  }
  if (parts.size() == 1 && int64_t(kept.size()) * G == first.rows()) {
    sb.batch = std::move(parts[0].sb.batch);
    sb.scored = std::move(parts[0].sb.scored);
  } else if (kept.empty()) {
    sb.batch = empty_batch(s);
  } else {
    std::vector<const rollout::RolloutBatch*> batches;
    for (auto& p : parts) batches.push_back(&p.sb.batch);
    sb.batch = rollout::merge_groups(batches, kept, s.tok->pad_id());
    for (auto [p, q] : kept)
      for (int64_t k = 0; k < G; ++k) sb.scored.push_back(parts[size_t(p)].sb.scored[size_t(q * G + k)]);
  }
  sb.global_rows = at::arange(gb * G, ge * G, at::kLong);
  sb.local_at = at::full({sb.NG}, -1, at::kLong).index_copy_(0, sb.global_rows, at::arange(sb.rows(), at::kLong));
  return out;
}

void stop_rollout_ranks(Session& s, bool finished) {
  auto& link = *s.rollout_link;
  if (link.closed) return;
  link.closed = true;
  if (!link.started) {  // they wait for the GRPO stage in the store: tell them there is none
    const bool done = s.st.stage == "grpo" && s.st.rollout_step >= s.cfg.grpo.rollout_steps;
    if (s.leader()) s.job->publish(kStartKey, done ? "finished" : "stopped");
    return;
  }
  if (finished) {
    send_weights(s, s.st.rollout_step, kFinal);  // the rollout ranks end with the trained policy
  } else {
    // stopped early: what the rollout ranks generate with the weights already sent is taken and
    // dropped; the stop tells them where that ends (with in-flight updates it may arrive before)
    int64_t until = s.st.rollout_step;
    while (until < s.cfg.grpo.rollout_steps && generation_version(s, until) <= link.last_sent) ++until;
    send_weights(s, link.last_sent, kStop, until);
    for (int64_t m = s.st.rollout_step; m < until; ++m) receive_generated(s, m);
  }
  link.wait_until(0);
}

// ---------------------------------------------------------------- rollout ranks
void run_rollout_rank(Session& s) {
  auto& link = *s.rollout_link;
  const auto& g = s.cfg.grpo;
  // The trainers may pretrain for hours first: wait in the store (it throws when rank 0 is gone).
  std::string start;
  for (;;) {
    if (auto v = s.job->peek(kStartKey)) {
      start = *v;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (start != "grpo") {  // the trainers had nothing to train, or stopped before the GRPO stage
    if (start == "finished") s.st.stage = "grpo", s.st.rollout_step = g.rollout_steps;
    return;
  }
  WeightsInbox inbox(s);
  Header h = inbox.next();
  GRPO_CHECK(h.kind == kWeights, "internal: the trainers began with a message of kind {}", h.kind);
  s.grpo_first_step = h.version;
  int64_t version = h.version, optimizer_step = h.optimizer_step, position = h.data_position;
  spdlog::info("rollout rank {}: generating from rollout step {}", s.job->rank(), version);
  std::deque<RolloutLink::Sent> sending;
  bool stopped = false;  // the trainers stopped early: the steps before stop_at are still sent
  int64_t stop_at = g.rollout_steps;
  auto take = [&](const Header& m) {
    if (m.kind == kStop) stopped = true, stop_at = m.until;
    else version = m.version, optimizer_step = m.optimizer_step;
  };
  // before each engine step: a version that has arrived replaces the weights (in-flight updates)
  const std::function<int64_t()> between_steps = [&] {
    if (!stopped)
      if (auto m = inbox.poll()) take(*m);
    return version;
  };
  for (int64_t m = version; m < std::min(g.rollout_steps, stop_at); ++m) {
    const auto t_wait = Clock::now();
    while (version < generation_version(s, m) && !stopped) take(inbox.next());
    if (m >= stop_at) break;
    GRPO_CHECK(!stopped || version >= generation_version(s, m), "internal: stopped before rollout step {}", m);
    GRPO_CHECK(version == generation_version(s, m) || (s.cfg.parallel.inflight_weight_updates && version > generation_version(s, m)),
               "internal: rollout step {} is due with weights {}, the trainers sent {}", m, generation_version(s, m),
               version);
    Generated gen;
    gen.step = m, gen.version = version;
    gen.time_wait_weights = seconds_since(t_wait);
    s.st.rollout_step = m;  // (error messages)
    const auto t0 = Clock::now();
    gen.sb = collect_groups(s, *s.policy, gen.stats, m, position, optimizer_step, between_steps);
    s.check_rewards(gen.sb.samples_failed, gen.sb.samples_scored, gen.sb.failure);
    gen.time_reward = gen.sb.reward_wait;
    gen.time_rollout = seconds_since(t0) - gen.time_reward;
    position += gen.sb.prompts_used;
    // every rollout rank's part to the first, which sends the step to the trainers
    Writer w;
    write_generated(w, gen);
    auto mine = to_bytes(w.bytes());
    std::vector<at::Tensor> all{mine};
    if (s.world->size() > 1) {
      auto lens = s.world->all_gather(at::tensor({mine.numel()}, at::kLong));
      int64_t longest = 0;
      for (auto& l : lens) longest = std::max(longest, l.item<int64_t>());
      auto padded = at::zeros({longest}, at::kByte);
      padded.narrow(0, 0, mine.numel()).copy_(mine);
      all = s.world->all_gather(padded);
      for (size_t r = 0; r < all.size(); ++r) all[r] = all[r].narrow(0, 0, lens[r].item<int64_t>());
    }
    if (s.world->rank() != 0) continue;
    Writer msg;
    msg.i64(int64_t(all.size()));
    std::string bytes = msg.bytes();
    for (auto& a : all) bytes.append(reinterpret_cast<const char*>(a.data_ptr<uint8_t>()), size_t(a.numel()));
    RolloutLink::Sent sent;
    sent.tensors = {at::tensor({int64_t(bytes.size())}, at::kLong), to_bytes(bytes)};
    for (auto& t : sent.tensors) sent.pending.push_back(link.data->broadcast_async(t, link.trainers));
    sending.push_back(std::move(sent));
    while (sending.size() > size_t(g.max_staleness) + 2) {  // the trainers take them in order
      sending.front().wait();
      sending.pop_front();
    }
  }
  if (!stopped) {
    h = inbox.next();  // the final weights (or a stop after the last step was generated)
    if (h.kind == kFinal) spdlog::info("rollout rank {}: holds the final weights (version {})", s.job->rank(), h.version);
    else stop_at = h.until;
  }
  // this process's state, as the trainers': finished, or stopped (grpo_train exits with 130)
  s.st.stage = "grpo";
  s.st.rollout_step = h.kind == kFinal ? h.version : std::min(stop_at, g.rollout_steps);
  for (auto& snd : sending) snd.wait();
}

}  // namespace grpo::train
