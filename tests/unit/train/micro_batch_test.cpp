// Micro-batch packing: rows sorted by length, packed within the token budget.
#include <algorithm>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/core/rng.h"
#include "grpo/train/micro_batch.h"
#include "../test_util.h"

using namespace grpo;
using grpo::test_util::error_of;

TEST(MicroBatch, PacksRowsSortedByLengthWithinTheTokenBudget) {
  // lengths (prompt + response): row 0: 3 + 2, row 1: 3 + 9, row 2: 2 + 1, row 3: 3 + 2
  const std::vector<int64_t> p{3, 3, 2, 3}, r{2, 9, 1, 2};
  // longest first; row 0 cannot join row 1 (2 x 12 > 20); rows 0, 3 (ties in order) and 2 share
  // one micro-batch of 3 x (3 + 2) = 15 tokens
  EXPECT_EQ(train::pack_micro_batches({0, 1, 2, 3}, p, r, 20),
            (std::vector<std::vector<int64_t>>{{1}, {0, 3, 2}}));
  // the budget counts rows x the longest row (rows are packed to the left): 2 x (6 + 1) = 14
  EXPECT_EQ(train::pack_micro_batches({2, 1}, {3, 6, 1}, {9, 1, 5}, 14), (std::vector<std::vector<int64_t>>{{1, 2}}));
  EXPECT_EQ(train::pack_micro_batches({2, 1}, {3, 6, 1}, {9, 1, 5}, 13), (std::vector<std::vector<int64_t>>{{1}, {2}}));
  // a row longer than the budget goes alone; a subset of the rows, any order
  EXPECT_EQ(train::pack_micro_batches({3, 1}, p, r, 4), (std::vector<std::vector<int64_t>>{{1}, {3}}));
  EXPECT_TRUE(train::pack_micro_batches({}, p, r, 4).empty());
  // random lengths: every row once, lengths non-increasing, budget kept (or a lone row)
  core::KeyedRng rng(42);
  std::vector<int64_t> pl(300), rl(300), rows;
  for (int64_t i = 0; i < 300; ++i) pl[i] = rng.uniform_int(1, 40), rl[i] = rng.uniform_int(1, 200), rows.push_back(i);
  auto mbs = train::pack_micro_batches(rows, pl, rl, 1000);
  std::vector<int64_t> seen;
  int64_t last = std::numeric_limits<int64_t>::max();
  for (auto& mb : mbs) {
    int64_t longest = 0;
    for (auto i : mb) {
      EXPECT_LE(pl[i] + rl[i], last);
      last = pl[i] + rl[i];
      longest = std::max(longest, pl[i] + rl[i]);
      seen.push_back(i);
    }
    EXPECT_TRUE(mb.size() == 1 || int64_t(mb.size()) * longest <= 1000) << mb.size() << " x " << longest;
    EXPECT_TRUE(&mb == &mbs.back() || int64_t(mb.size() + 1) * longest > 1000) << "room for one more row";
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, rows);
  EXPECT_NE(error_of([&] { train::pack_micro_batches({4}, p, r, 10); }).find("row 4"), std::string::npos);
  EXPECT_NE(error_of([&] { train::pack_micro_batches({0}, p, r, 0); }).find("budget"), std::string::npos);
}
