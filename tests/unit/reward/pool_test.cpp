// The reward pool: out-of-order submissions scored by index, late ones timed out.
#include <chrono>
#include <memory>
#include <thread>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/reward/pool.h"
#include "grpo/reward/reward.h"

using namespace grpo;

namespace {
class Slow : public reward::RewardFn {
 public:
  double score(const std::string& c, const std::string&) const override {
    if (c == "slow") std::this_thread::sleep_for(std::chrono::milliseconds(300));
    return double(c.size());
  }
};
}  // namespace

TEST(RewardPool, ScoresOutOfOrderSubmissionsByIndexAndTimesOutLateOnes) {
  reward::RewardRegistry::add("test_slow", [] { return std::make_unique<Slow>(); });
  reward::CombinedReward r({{"test_slow", 2.0}}, -1.0);
  reward::RewardPool pool(r, 2, /*budget_seconds=*/0.1, -1.0);
  const std::vector<std::string> texts{"a", "bb", "slow", "dddd"};
  for (int64_t i : {3, 0, 2, 1}) {
    reward::Sample s;
    s.completion = texts[i];
    pool.submit(i, s);
  }
  auto out = pool.wait(4);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_DOUBLE_EQ(out[0].total, 2.0);
  EXPECT_DOUBLE_EQ(out[1].total, 4.0);
  EXPECT_DOUBLE_EQ(out[3].total, 8.0);
  EXPECT_DOUBLE_EQ(out[2].total, -2.0);  // past its 0.1 s budget: the failure value
  ASSERT_EQ(out[2].failed.size(), 1u);
  EXPECT_NE(out[2].failed[0].find("timed out"), std::string::npos);
  EXPECT_EQ(pool.last_stats().timeouts, 1);
  // the pool is reusable; a missing index is an error
  reward::Sample s;
  s.completion = "x";
  pool.submit(1, s);
  EXPECT_THROW(pool.wait(2), grpo::Error);
}
