// Uses the installed library: a custom reward registered by name, GRPO advantages on its scores,
// and per-token log-probs of a fresh model. Prints one line; exits non-zero on any mismatch.
#include <ATen/ATen.h>
#include <cstdio>
#include <memory>

#include "grpo/algo/grpo_loss.h"
#include "grpo/model/logprob.h"
#include "grpo/model/transformer.h"
#include "grpo/reward/reward.h"

namespace {
class LengthReward : public grpo::reward::RewardFn {
 public:
  double score(const std::string& completion, const std::string&) const override {
    return static_cast<double>(completion.size());
  }
};
}  // namespace

int main() {
  grpo::reward::RewardRegistry::add("length", [] { return std::make_unique<LengthReward>(); });
  grpo::reward::CombinedReward reward({{"length", 1.0}});
  std::vector<double> r{reward.score("ab", "").total, reward.score("abcd", "").total};
  auto adv = grpo::algo::group_advantages(at::tensor(r, at::kDouble), 2);

  grpo::model::ModelConfig c;
  c.vocab_size = 16;
  c.hidden_size = 32;
  c.num_hidden_layers = 1;
  grpo::model::Transformer model(c);
  auto ids = at::randint(0, 16, {2, 5}, at::kLong);
  auto lp = grpo::model::token_logprobs(model.forward(ids), model.lm_head_weight(), ids);
  bool ok = adv.values[0].item<float>() < 0 && adv.values[1].item<float>() > 0 &&
            lp.logprobs.lt(0).all().item<bool>();
  std::printf("consumer: advantages %.3f %.3f, mean log-prob %.3f: %s\n", adv.values[0].item<float>(),
              adv.values[1].item<float>(), lp.logprobs.mean().item<float>(), ok ? "ok" : "MISMATCH");
  return ok ? 0 : 1;
}
