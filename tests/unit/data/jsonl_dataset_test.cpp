// JSONL datasets: field names, bad lines (error with file:line, or skipped and counted), seeded
// per-epoch shuffling that is a pure function of the position (resumable).
#include <filesystem>
#include <fstream>
#include <set>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "../test_util.h"

#include "grpo/core/error.h"
#include "grpo/data/jsonl_dataset.h"

using namespace grpo::data;

namespace {
std::string write(const std::string& name, const std::string& text) {
  auto dir = std::string(GRPO_TEST_TMPDIR);
  std::filesystem::create_directories(dir);
  auto p = dir + "/" + name;
  std::ofstream(p) << text;
  return p;
}
}  // namespace

TEST(JsonlDataset, FieldsNestedPathsAndNumbers) {
  JsonlDatasetConfig c;
  c.path = write("gsm.jsonl",
                 "{\"question\": \"1+1?\", \"answer\": \"#### 2\"}\n\n"
                 "{\"question\": \"2+2?\", \"answer\": 4}\r\n");
  JsonlDataset d(c, 1);
  ASSERT_EQ(d.size(), 2);
  EXPECT_EQ(d.examples()[1].answer, "4");
  EXPECT_EQ(d.examples()[1].line, 3);
  c.path = write("nested.jsonl", "{\"messages\": [{\"content\": \"hi\"}], \"meta\": {\"gt\": \"x\"}}\n");
  c.prompt_field = "messages.0.content";
  c.answer_field = "meta.gt";
  JsonlDataset n(c, 1);
  EXPECT_EQ(n.examples()[0].prompt, "hi");
  EXPECT_EQ(n.examples()[0].answer, "x");
}

TEST(JsonlDataset, AnswerAfterMarkerAsInGsm8k) {
  JsonlDatasetConfig c;
  c.answer_after = "####";
  c.path = write("gsm_marker.jsonl",
                 "{\"question\": \"q1\", \"answer\": \"3 + 4 = 7 #### 9 ####  1,234 \\n\"}\n"
                 "{\"question\": \"q2\", \"answer\": \"no marker\"}\n");
  auto e = grpo::test_util::error_of([&] { JsonlDataset d(c, 1); });
  EXPECT_NE(e.find("gsm_marker.jsonl:2: field 'answer' has no '####'"), std::string::npos) << e;
  c.on_bad_line = "skip";
  JsonlDataset d(c, 1);
  ASSERT_EQ(d.size(), 1);
  EXPECT_EQ(d.examples()[0].answer, "1,234");  // after the last marker, trimmed
}

TEST(JsonlDataset, BadLinesNameFileAndLineOrAreSkipped) {
  JsonlDatasetConfig c;
  c.path = write("bad.jsonl",
                 "{\"question\": \"a\", \"answer\": \"1\"}\n"
                 "{\"question\": \"b\"}\n"
                 "not json\n"
                 "{\"question\": \"c\", \"answer\": \"3\"}\n");
  try {
    JsonlDataset d(c, 1);
    FAIL() << "expected an error";
  } catch (const grpo::Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("bad.jsonl:2: no field 'answer'"), std::string::npos) << m;
  }
  c.on_bad_line = "skip";
  JsonlDataset d(c, 1);
  EXPECT_EQ(d.size(), 2);
  EXPECT_EQ(d.skipped_lines(), 2);
  c.path = write("none.jsonl", "x\n");
  EXPECT_THROW(JsonlDataset(c, 1), grpo::Error);
  c.path = "/nonexistent/file.jsonl";
  EXPECT_THROW(JsonlDataset(c, 1), grpo::Error);
  // a line past 64 MiB is an error before more of it is read; JSON nested past 64 levels is a bad line
  c.on_bad_line = "error";
  c.path = write("long.jsonl", "{\"question\": \"a\", \"answer\": \"1\"}\n{\"question\": \"" +
                                   std::string((size_t(64) << 20) + 10, 'x') + "\"}\n");
  auto m = grpo::test_util::error_of([&] { JsonlDataset(c, 1); });
  EXPECT_NE(m.find("long.jsonl:2: the line is longer than 64 MiB"), std::string::npos) << m;
  c.path = write("deep.jsonl", "{\"question\": " + std::string(100, '[') + std::string(100, ']') + "}\n");
  m = grpo::test_util::error_of([&] { JsonlDataset(c, 1); });
  EXPECT_NE(m.find("deep.jsonl:1: not JSON (or nested deeper than 64 levels)"), std::string::npos) << m;
}

TEST(JsonlDataset, SeededShufflePerEpochIsResumable) {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "{\"question\": \"q" + std::to_string(i) + "\", \"answer\": \"a\"}\n";
  JsonlDatasetConfig c;
  c.path = write("many.jsonl", text);
  JsonlDataset a(c, 7), b(c, 7), other(c, 8);
  std::set<std::string> epoch0, epoch1;
  bool differs_from_file = false, differs_between_epochs = false, differs_by_seed = false;
  for (int64_t i = 0; i < 50; ++i) {
    epoch0.insert(a.sample(i).prompt);
    epoch1.insert(a.sample(50 + i).prompt);
    differs_from_file |= a.sample(i).prompt != a.examples()[i].prompt;
    differs_between_epochs |= a.sample(i).prompt != a.sample(50 + i).prompt;
    differs_by_seed |= a.sample(i).prompt != other.sample(i).prompt;
  }
  EXPECT_EQ(epoch0.size(), 50u);  // each epoch is a permutation
  EXPECT_EQ(epoch1.size(), 50u);
  EXPECT_TRUE(differs_from_file && differs_between_epochs && differs_by_seed);
  // resumable: a fresh reader at any position agrees, whatever was read before
  for (int64_t pos : {123, 7, 51, 0, 99}) EXPECT_EQ(b.sample(pos).prompt, a.sample(pos).prompt);
  c.shuffle = false;
  JsonlDataset plain(c, 7);
  EXPECT_EQ(plain.sample(53).prompt, "q3");
}

// Chat-format lines (SFT): question and response fields both name the messages list.
TEST(JsonlDataset, ChatMessagesGiveQuestionResponseAndSystem) {
  JsonlDatasetConfig c;
  c.prompt_field = c.answer_field = "messages";
  c.path = write("chat.jsonl",
                 R"({"messages": [{"role": "user", "content": "1+1="}, {"role": "assistant", "content": "<answer>2</answer>"}]})"
                 "\n"
                 R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2="}, {"role": "assistant", "content": "4"}]})"
                 "\n");
  JsonlDataset d(c, 0);
  ASSERT_EQ(d.size(), 2);
  EXPECT_EQ(d.examples()[0].prompt, "1+1=");
  EXPECT_EQ(d.examples()[0].answer, "<answer>2</answer>");
  EXPECT_EQ(d.examples()[0].system, "");
  EXPECT_EQ(d.examples()[1].system, "Be brief.");
  EXPECT_EQ(d.examples()[1].answer, "4");
  for (auto [text, want] : std::vector<std::pair<std::string, std::string>>{
           {R"({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"}]})",
            "exactly one user message"},
           {R"({"messages": [{"role": "assistant", "content": "b"}, {"role": "user", "content": "a"}]})", "unexpected role 'assistant'"},
           {R"({"messages": [{"role": "user", "content": "a"}]})", "assistant message"},
           {R"({"messages": [{"role": "user"}]})", "role and content"}}) {
    c.path = write("chat_bad.jsonl", text + "\n");
    auto e = grpo::test_util::error_of([&] { JsonlDataset(c, 0); });
    EXPECT_NE(e.find("chat_bad.jsonl:1"), std::string::npos) << e;
    EXPECT_NE(e.find(want), std::string::npos) << e;
  }
}
