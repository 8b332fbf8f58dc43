// c10d behind dist/comm.h. Compiled with USE_C10D_GLOO and gloo's headers (CMakeLists.txt).
#include "grpo/dist/comm.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "grpo/core/error.h"

#include <algorithm>
#include <thread>

namespace grpo::dist {

Comm::~Comm() = default;

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
  void barrier() override {}
  std::unique_ptr<Pending> all_reduce_sum_async(at::Tensor&) override { return std::make_unique<Done>(); }
  std::unique_ptr<Comm> group(const std::vector<int64_t>& ranks, const std::string&) override {
    GRPO_CHECK(ranks.size() == 1 && ranks[0] == 0, "group: ranks {} are not a group of a one-process job",
               fmt::join(ranks, ","));
    return std::make_unique<SoloComm>();
  }

 private:
  struct Done final : Pending {
    void wait() override {}
  };
};

class GlooComm final : public Comm {
 public:
  GlooComm(const LaunchInfo& l, std::chrono::milliseconds timeout)
      : Comm(l.rank, l.world_size), timeout_(timeout),
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
    // every rank announces itself; the missing ones are named
    store_->set(key(rank_), std::vector<uint8_t>{1});
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
    connect_group(store_);
  }
  // A sub-group: its own process group over a prefix of the parent's store.
  GlooComm(const GlooComm& parent, const std::vector<int64_t>& ranks, const std::string& name)
      : Comm(std::find(ranks.begin(), ranks.end(), parent.rank_) - ranks.begin(), int64_t(ranks.size())),
        timeout_(parent.timeout_), host_(parent.host_), store_(parent.store_) {
    connect_group(c10::make_intrusive<c10d::PrefixStore>("grpo/group/" + name, parent.store_));
  }

  std::unique_ptr<Comm> group(const std::vector<int64_t>& ranks, const std::string& name) override {
    GRPO_CHECK(!ranks.empty() && std::is_sorted(ranks.begin(), ranks.end()) &&
                   std::adjacent_find(ranks.begin(), ranks.end()) == ranks.end() && ranks.front() >= 0 &&
                   ranks.back() < size_,
               "group '{}': ranks {} must be distinct, ascending, in [0, {})", name, fmt::join(ranks, ","), size_);
    GRPO_CHECK(std::find(ranks.begin(), ranks.end(), rank_) != ranks.end(),
               "group '{}': rank {} is not one of its ranks {}", name, rank_, fmt::join(ranks, ","));
    if (ranks.size() == 1) return std::make_unique<SoloComm>();
    return std::unique_ptr<Comm>(new GlooComm(*this, ranks, name));
  }

  std::unique_ptr<Pending> all_reduce_sum_async(at::Tensor& t) override {
    GRPO_CHECK(t.is_contiguous(), "all_reduce_sum_async: the tensor must be contiguous");
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp(c10d::ReduceOp::SUM);
    c10::intrusive_ptr<c10d::Work> w;
    run("all_reduce_sum", [&] { w = pg_->allreduce(v, o); });
    return std::make_unique<GlooPending>(this, std::move(w));
  }

  void all_reduce_sum(at::Tensor& t) override { reduce(t, c10d::ReduceOp::SUM, "all_reduce_sum"); }
  void all_reduce_max(at::Tensor& t) override { reduce(t, c10d::ReduceOp::MAX, "all_reduce_max"); }
  void broadcast(at::Tensor& t, int64_t root) override {
    std::vector<at::Tensor> v{t};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    run("broadcast", [&] { pg_->broadcast(v, o)->wait(); });
  }
  std::vector<at::Tensor> all_gather(const at::Tensor& t) override {
    std::vector<std::vector<at::Tensor>> out(1);
    for (int64_t r = 0; r < size_; ++r) out[0].push_back(at::empty_like(t));
    std::vector<at::Tensor> in{t.contiguous()};
    run("all_gather", [&] { pg_->allgather(out, in)->wait(); });
    return out[0];
  }
  at::Tensor all_to_all(const at::Tensor& input, const std::vector<int64_t>& send, std::vector<int64_t>* recv_out) override {
    GRPO_CHECK(int64_t(send.size()) == size_, "all_to_all: {} send counts for {} ranks", send.size(), size_);
    int64_t total = 0;
    for (auto c : send) total += c;
    GRPO_CHECK(total == input.size(0), "all_to_all: send counts add up to {}, the input has {} rows", total, input.size(0));
    // exchange the counts, then the rows
    auto counts = at::tensor(send, at::kLong), recv_counts = at::empty({size_}, at::kLong);
    std::vector<int64_t> ones_out(size_t(size_), 1), ones_in(size_t(size_), 1);
    run("all_to_all (counts)", [&] { pg_->alltoall_base(recv_counts, counts, ones_out, ones_in)->wait(); });
    std::vector<int64_t> recv(recv_counts.data_ptr<int64_t>(), recv_counts.data_ptr<int64_t>() + size_);
    int64_t rows = 0;
    for (auto c : recv) rows += c;
    auto shape = input.sizes().vec();
    shape[0] = rows;
    auto out = at::empty(shape, input.options());
    auto in = input.contiguous();
    // c10d may move from the count vectors: hand it copies
    std::vector<int64_t> recv_v = recv, send_v = send;
    run("all_to_all", [&] { pg_->alltoall_base(out, in, recv_v, send_v)->wait(); });
    if (recv_out) *recv_out = recv;
    return out;
  }
  void barrier() override {
    run("barrier", [&] { pg_->barrier()->wait(); });
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
      pg_ = c10::make_intrusive<c10d::ProcessGroupGloo>(store, int(rank_), int(size_), opts);
    } catch (const std::exception& e) {
      fail("rank {} of {}: setting up the Gloo process group failed: {}", rank_, size_, first_line(e.what()));
    }
  }
  struct GlooPending final : Pending {
    GlooPending(GlooComm* c, c10::intrusive_ptr<c10d::Work> w) : comm(c), work(std::move(w)) {}
    void wait() override {
      if (work) comm->run("all_reduce_sum", [&] { work->wait(); });
      work.reset();
    }
    GlooComm* comm;
    c10::intrusive_ptr<c10d::Work> work;
  };
  void reduce(at::Tensor& t, c10d::ReduceOp::RedOpType op, const char* what) {
    GRPO_CHECK(t.is_contiguous(), "{}: the tensor must be contiguous", what);
    std::vector<at::Tensor> v{t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp(op);
    run(what, [&] { pg_->allreduce(v, o)->wait(); });
  }
  template <typename F>
  void run(const char* what, F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      fail("rank {} of {}: {} failed within {} s -- another rank has died or stopped responding: {}", rank_,
           size_, what, seconds(), first_line(e.what()));
    }
  }

  std::chrono::milliseconds timeout_;
  std::string host_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg_;
};

}  // namespace

std::unique_ptr<Comm> Comm::connect(const LaunchInfo& launch, std::chrono::milliseconds timeout) {
  if (launch.world_size == 1) return std::make_unique<SoloComm>();
  return std::make_unique<GlooComm>(launch, timeout);
}

}  // namespace grpo::dist
