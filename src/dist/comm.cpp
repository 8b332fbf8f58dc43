// c10d behind dist/comm.h. Compiled with USE_C10D_GLOO and gloo's headers (CMakeLists.txt); the
// NCCL process group is made in nccl_backend.cpp (builds with LibTorch's CUDA libraries only).
#include "grpo/dist/comm.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "grpo/build_config.h"
#include "grpo/core/error.h"
#include "nccl_backend.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>

namespace grpo::dist {

Comm::~Comm() = default;

bool nccl_built() { return GRPO_WITH_NCCL != 0; }

Backend resolve_backend(const std::string& name, const c10::Device& device, bool own_gpu, const std::string& key) {
  if (name != "auto" && name != "gloo" && name != "nccl")
    throw ConfigError(fmt::format("{}: expected auto, gloo or nccl, found '{}'", key, name));
  if (name == "gloo") return Backend::gloo;
  const bool gpu = device.is_cuda();
  if (name == "auto") return gpu && own_gpu && nccl_built() ? Backend::nccl : Backend::gloo;
  if (!gpu)
    throw ConfigError(fmt::format("{} = nccl: NCCL moves GPU tensors, and run.device is {} (use gloo or auto)",
                                  key, device.str()));
  if (!nccl_built())
    throw ConfigError(fmt::format("{} = nccl: this libgrpo was built without NCCL (it needs a LibTorch with its "
                                  "CUDA libraries linked and nccl.h; see README 'On a GPU'); use gloo or auto", key));
  if (!own_gpu)
    throw ConfigError(fmt::format("{} = nccl: several processes of this node share {} and NCCL needs a GPU per "
                                  "process (run.device: cuda gives process i GPU i); use gloo or auto", key,
                                  device.str()));
  return Backend::nccl;
}

namespace {

// One process: every collective is the identity.
class SoloComm final : public Comm {
 public:
  SoloComm() : Comm(0, 1) {}
  void all_reduce_sum(at::Tensor&) override {}
  void all_reduce_max(at::Tensor&) override {}
  void broadcast(at::Tensor&, int64_t) override {}
  std::vector<at::Tensor> all_gather(const at::Tensor& t) override { return {t.clone()}; }
  at::Tensor all_to_all(const at::Tensor& input, const std::vector<int64_t>& send, std::vector<int64_t>* recv) override {
    GRPO_CHECK(send.size() == 1 && send[0] == input.size(0), "all_to_all: send counts {} do not cover {} rows",
               send.size(), input.size(0));
    if (recv) *recv = send;
    return input.clone();
  }
  at::Tensor reduce_scatter_sum(const at::Tensor& input) override { return input.clone(); }
  void barrier() override {}
  std::unique_ptr<Pending> all_reduce_sum_async(at::Tensor&) override { return std::make_unique<Done>(); }
  std::unique_ptr<Pending> broadcast_async(at::Tensor&, int64_t) override { return std::make_unique<Done>(); }
  void publish(const std::string& key, const std::string& value) override { values_[key] = value; }
  std::optional<std::string> peek(const std::string& key) override {
    auto it = values_.find(key);
    return it == values_.end() ? std::nullopt : std::optional<std::string>(it->second);
  }
  std::string backend() const override { return "none"; }
  std::unique_ptr<Comm> group(const std::vector<int64_t>& ranks, const std::string&) override {
    GRPO_CHECK(ranks.size() == 1 && ranks[0] == 0, "group: ranks {} are not a group of a one-process job",
               fmt::join(ranks, ","));
    return std::make_unique<SoloComm>();
  }

 private:
  struct Done final : Pending {
    void wait() override {}
    bool ready() override { return true; }
  };
  std::map<std::string, std::string> values_;
};

// c10d process groups: Gloo for host tensors (and, through a host copy, for GPU tensors when the
// job does not use NCCL), NCCL for GPU tensors when it does.
class C10dComm final : public Comm {
 public:
  C10dComm(const LaunchInfo& l, std::chrono::milliseconds timeout, const CommOptions& options)
      : Comm(l.rank, l.world_size), timeout_(timeout), options_(options),
        host_(l.master_addr == "127.0.0.1" || l.master_addr == "localhost" ? "127.0.0.1" : local_hostname()) {
    const std::string where = fmt::format("{}:{}", l.master_addr, l.master_port);
    c10d::TCPStoreOptions o;
    o.port = uint16_t(l.master_port);
    o.isServer = l.rank == 0;
    o.waitWorkers = false;
    o.timeout = timeout;
    try {
      store_ = c10::make_intrusive<c10d::TCPStore>(l.master_addr, o);
    } catch (const std::exception& e) {
      fail("rank {} of {}: cannot {} the rendezvous store at {} within {} s{}: {}", rank_, size_,
           l.rank == 0 ? "serve" : "reach", where, seconds(),
           l.rank == 0 ? " (is the port in use?)" : " (is rank 0 running?)", first_line(e.what()));
    }
    // every rank announces itself (its host and process id); the missing ones are named
    const std::string me = fmt::format("{} {}", local_hostname(), ::getpid());
    store_->set(key(rank_), std::vector<uint8_t>(me.begin(), me.end()));
    std::vector<std::string> keys;
    for (int64_t r = 0; r < size_; ++r) keys.push_back(key(r));
    try {
      store_->wait(keys, timeout);
    } catch (const std::exception&) {
      std::vector<int64_t> missing;
      try {
        for (int64_t r = 0; r < size_; ++r)
          if (!store_->check({key(r)})) missing.push_back(r);
      } catch (const std::exception&) {
        fail("rank {} of {}: the rendezvous at {} did not complete within {} s, and rank 0 (its server) "
             "is gone", rank_, size_, where, seconds());
      }
      // rank 0 serves the store: keep it up a moment so the others can read who is missing
      if (rank_ == 0) std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(timeout, std::chrono::seconds(2)));
      fail("rank {} of {}: rank{} {} did not join the rendezvous at {} within {} s", rank_, size_,
           missing.size() == 1 ? "" : "s", fmt::join(missing, ", "), where, seconds());
    }
    for (int64_t r = 0; r < size_; ++r) {
      const auto v = store_->get(key(r));
      procs_.emplace_back(v.begin(), v.end());
      world_ranks_.push_back(r);
    }
    connect_group(store_);
  }
  // A sub-group: its own process groups over a prefix of the parent's store.
  C10dComm(const C10dComm& parent, const std::vector<int64_t>& ranks, const std::string& name)
      : Comm(std::find(ranks.begin(), ranks.end(), parent.rank_) - ranks.begin(), int64_t(ranks.size())),
        timeout_(parent.timeout_), options_(parent.options_), host_(parent.host_), store_(parent.store_),
        procs_(parent.procs_) {
    for (auto r : ranks) world_ranks_.push_back(parent.world_ranks_[size_t(r)]);
    connect_group(c10::make_intrusive<c10d::PrefixStore>("grpo/group/" + name, parent.store_));
  }

  std::string backend() const override {
    return nccl_ ? "nccl (GPU tensors) + gloo (host tensors)" : "gloo";
  }

  std::unique_ptr<Comm> group(const std::vector<int64_t>& ranks, const std::string& name) override {
    GRPO_CHECK(!ranks.empty() && std::is_sorted(ranks.begin(), ranks.end()) &&
                   std::adjacent_find(ranks.begin(), ranks.end()) == ranks.end() && ranks.front() >= 0 &&
                   ranks.back() < size_,
               "group '{}': ranks {} must be distinct, ascending, in [0, {})", name, fmt::join(ranks, ","), size_);
    GRPO_CHECK(std::find(ranks.begin(), ranks.end(), rank_) != ranks.end(),
               "group '{}': rank {} is not one of its ranks {}", name, rank_, fmt::join(ranks, ","));
    if (ranks.size() == 1) return std::make_unique<SoloComm>();
    return std::unique_ptr<Comm>(new C10dComm(*this, ranks, name));
  }

  std::unique_ptr<Pending> all_reduce_sum_async(at::Tensor& t) override {
    GRPO_CHECK(t.is_contiguous(), "all_reduce_sum_async: the tensor must be contiguous");
    auto [pg, v] = place(t);
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
    c10::intrusive_ptr<c10d::Work> w;
    run("all_reduce_sum", [&] { w = pg->allreduce(v, o); });
    return std::make_unique<C10dPending>(this, "all_reduce_sum", std::move(w), t, v[0]);
  }
  std::unique_ptr<Pending> broadcast_async(at::Tensor& t, int64_t root) override {
    GRPO_CHECK(t.is_contiguous(), "broadcast_async: the tensor must be contiguous");
    auto [pg, v] = place(t);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    c10::intrusive_ptr<c10d::Work> w;
    run("broadcast", [&] { w = pg->broadcast(v, o); });
    return std::make_unique<C10dPending>(this, "broadcast", std::move(w), t, v[0]);
  }
  void publish(const std::string& key, const std::string& value) override {
    run("publish", [&] { store_->set("grpo/value/" + key, std::vector<uint8_t>(value.begin(), value.end())); });
  }
  std::optional<std::string> peek(const std::string& key) override {
    std::optional<std::string> out;
    try {
      if (store_->check({"grpo/value/" + key})) {
        const auto v = store_->get("grpo/value/" + key);
        out = std::string(v.begin(), v.end());
      }
    } catch (const std::exception& e) {
      fail("rank {} of {}: the rendezvous store (rank 0) is gone: {}", world_ranks_[size_t(rank_)], procs_.size(),
           first_line(e.what()));
    }
    return out;
  }

  void all_reduce_sum(at::Tensor& t) override { reduce(t, c10d::ReduceOp::SUM, "all_reduce_sum"); }
  void all_reduce_max(at::Tensor& t) override { reduce(t, c10d::ReduceOp::MAX, "all_reduce_max"); }
  void broadcast(at::Tensor& t, int64_t root) override {
    GRPO_CHECK(t.is_contiguous(), "broadcast: the tensor must be contiguous");
    auto [pg, v] = place(t);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    run("broadcast", [&] { pg->broadcast(v, o)->wait(); });
    unstage(t, v[0]);
  }
  std::vector<at::Tensor> all_gather(const at::Tensor& t) override {
    auto [pg, in] = place(t.contiguous());
    std::vector<std::vector<at::Tensor>> out(1);
    for (int64_t r = 0; r < size_; ++r) out[0].push_back(at::empty_like(in[0]));
    run("all_gather", [&] { pg->allgather(out, in)->wait(); });
    for (auto& o : out[0]) o = o.to(t.device());
    return out[0];
  }
  at::Tensor all_to_all(const at::Tensor& input, const std::vector<int64_t>& send, std::vector<int64_t>* recv_out) override {
    GRPO_CHECK(int64_t(send.size()) == size_, "all_to_all: {} send counts for {} ranks", send.size(), size_);
    int64_t total = 0;
    for (auto c : send) total += c;
    GRPO_CHECK(total == input.size(0), "all_to_all: send counts add up to {}, the input has {} rows", total, input.size(0));
    // exchange the counts (host tensors: Gloo), then the rows
    auto counts = at::tensor(send, at::kLong), recv_counts = at::empty({size_}, at::kLong);
    std::vector<int64_t> ones_out(size_t(size_), 1), ones_in(size_t(size_), 1);
    run("all_to_all (counts)", [&] { gloo_->alltoall_base(recv_counts, counts, ones_out, ones_in)->wait(); });
    std::vector<int64_t> recv(recv_counts.data_ptr<int64_t>(), recv_counts.data_ptr<int64_t>() + size_);
    int64_t rows = 0;
    for (auto c : recv) rows += c;
    auto [pg, in] = place(input.contiguous());
    auto shape = input.sizes().vec();
    shape[0] = rows;
    auto out = at::empty(shape, in[0].options());
    // c10d may move from the count vectors: hand it copies
    std::vector<int64_t> recv_v = recv, send_v = send;
    run("all_to_all", [&] { pg->alltoall_base(out, in[0], recv_v, send_v)->wait(); });
    if (recv_out) *recv_out = recv;
    return out.to(input.device());
  }
  at::Tensor reduce_scatter_sum(const at::Tensor& input) override {
    GRPO_CHECK(input.dim() >= 1 && input.size(0) % size_ == 0,
               "reduce_scatter_sum: {} rows do not split into {} equal blocks", input.dim() ? input.size(0) : 0, size_);
    auto [pg, in] = place(input.contiguous());
    auto shape = input.sizes().vec();
    shape[0] /= size_;
    auto out = at::empty(shape, in[0].options());
    c10d::ReduceScatterOptions o;
    o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
    run("reduce_scatter_sum", [&] { pg->_reduce_scatter_base(out, in[0], o)->wait(); });
    return out.to(input.device());
  }
  void barrier() override {
    run("barrier", [&] { gloo_->barrier()->wait(); });
  }

 private:
  static std::string key(int64_t r) { return "grpo/arrived/" + std::to_string(r); }
  static std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }
  static std::string local_hostname() {
    char buf[256] = {0};
    ::gethostname(buf, sizeof buf - 1);
    return buf;
  }
  double seconds() const { return double(timeout_.count()) / 1000.0; }
  void connect_group(const c10::intrusive_ptr<c10d::Store>& store) {
    try {
      auto opts = c10d::ProcessGroupGloo::Options::create(timeout_);
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host_));
      gloo_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, int(rank_), int(size_), opts);
    } catch (const std::exception& e) {
      fail("rank {} of {}: setting up the Gloo process group failed: {}", rank_, size_, first_line(e.what()));
    }
    if (options_.backend != Backend::nccl) return;
    try {
#if GRPO_WITH_NCCL
      nccl_ = detail::make_nccl_backend(c10::make_intrusive<c10d::PrefixStore>("nccl", store), int(rank_),
                                        int(size_), timeout_, options_.device_index);
#else
      throw std::runtime_error("this libgrpo was built without NCCL");
#endif
    } catch (const std::exception& e) {
      fail("rank {} of {}: setting up the NCCL process group on GPU {} failed: {}", rank_, size_,
           options_.device_index, first_line(e.what()));
    }
  }
  // The process group for `t` and the tensor it works on: GPU tensors go to NCCL when the job
  // uses it; otherwise Gloo works on host memory (a GPU tensor's host copy).
  std::pair<c10d::Backend*, std::vector<at::Tensor>> place(const at::Tensor& t) {
    if (t.is_cpu()) return {gloo_.get(), {t}};
    if (nccl_ && t.is_cuda()) return {nccl_.get(), {t}};
    return {gloo_.get(), {t.to(at::kCPU)}};
  }
  // In-place collectives on a host copy: the result goes back to the tensor.
  static void unstage(at::Tensor& t, const at::Tensor& worked) {
    if (!worked.is_same(t)) t.copy_(worked);
  }
  struct C10dPending final : Pending {
    C10dPending(C10dComm* c, const char* w_what, c10::intrusive_ptr<c10d::Work> w, at::Tensor t, at::Tensor worked)
        : comm(c), what(w_what), work(std::move(w)), target(std::move(t)), staged(std::move(worked)) {}
    void wait() override {
      if (work) {
        comm->run(what, [&] { work->wait(); });
        unstage(target, staged);
      }
      work.reset();
    }
    bool ready() override { return !work || work->isCompleted(); }
    C10dComm* comm;
    const char* what;
    c10::intrusive_ptr<c10d::Work> work;
    at::Tensor target, staged;
  };
  void reduce(at::Tensor& t, c10d::ReduceOp::RedOpType op, const char* what) {
    GRPO_CHECK(t.is_contiguous(), "{}: the tensor must be contiguous", what);
    auto [pg, v] = place(t);
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp(op);
    run(what, [&] { pg->allreduce(v, o)->wait(); });
    unstage(t, v[0]);
  }
  template <typename F>
  void run(const char* what, F&& f) {
    const auto t0 = std::chrono::steady_clock::now();
    try {
      f();
    } catch (const std::exception& e) {
      const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      fail("rank {} of {}: {} failed after {:.1f} s (parallel.timeout {} s): {}; {}", world_ranks_[size_t(rank_)],
           procs_.size(), what, took, seconds(), who_stopped(), first_line(e.what()));
    }
  }
  // A process of this host that has not exited (a zombie, not yet reaped by its launcher, has).
  static bool running(long pid) {
    if (::kill(pid_t(pid), 0) != 0 && errno == ESRCH) return false;
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string line;
    if (!std::getline(stat, line)) return true;
    const auto paren = line.rfind(')');  // "pid (comm) S ..."
    return !(paren != std::string::npos && paren + 2 < line.size() && (line[paren + 2] == 'Z' || line[paren + 2] == 'X'));
  }
  // Which other ranks of this group have exited: those on this host are checked by process id
  // (kill(pid, 0)); the others cannot be seen from here.
  std::string who_stopped() const {
    const std::string here = local_hostname();
    std::vector<std::string> dead, elsewhere;
    for (int64_t r : world_ranks_) {
      if (r == world_ranks_[size_t(rank_)]) continue;
      const std::string& p = procs_[size_t(r)];
      const auto sp = p.rfind(' ');
      const std::string host = p.substr(0, sp);
      const long pid = std::atol(p.c_str() + sp + 1);
      if (host != here) elsewhere.push_back(std::to_string(r));
      else if (pid > 0 && !running(pid))
        dead.push_back(fmt::format("{} (process {})", r, pid));
    }
    if (!dead.empty())
      return fmt::format("rank{} {} of this group {} exited", dead.size() == 1 ? "" : "s", fmt::join(dead, ", "),
                         dead.size() == 1 ? "has" : "have");
    return elsewhere.empty() ? "every other rank of this group is still running on this host (one stopped responding)"
                             : fmt::format("no rank on this host has exited; rank{} {} on other hosts may have",
                                           elsewhere.size() == 1 ? "" : "s", fmt::join(elsewhere, ", "));
  }

  std::chrono::milliseconds timeout_;
  CommOptions options_;
  std::string host_;
  c10::intrusive_ptr<c10d::Store> store_;
  std::vector<std::string> procs_;     // "<host> <pid>" of every rank of the job, by world rank
  std::vector<int64_t> world_ranks_;   // this group's ranks as world ranks
  c10::intrusive_ptr<c10d::Backend> gloo_, nccl_;
};

}  // namespace

std::unique_ptr<Comm> Comm::connect(const LaunchInfo& launch, std::chrono::milliseconds timeout,
                                    const CommOptions& options) {
  if (launch.world_size == 1) return std::make_unique<SoloComm>();
  return std::make_unique<C10dComm>(launch, timeout, options);
}

}  // namespace grpo::dist
