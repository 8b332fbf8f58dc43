// Prompt/answer datasets from JSONL files (GSM8K / MATH style exports): one JSON object per line,
// configurable field names, a seeded shuffle per epoch, and a position that is just a counter (the
// trainer's data cursor), so resuming needs no other state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "grpo/core/config.h"

namespace grpo::data {

struct JsonlDatasetConfig {
  std::string path;
  std::string prompt_field = "question";  // GSM8K: question; MATH: problem
  std::string answer_field = "answer";    // GSM8K: answer; MATH: solution / answer
  std::string answer_after;               // keep the text after the last occurrence (GSM8K: ####)
  std::string on_bad_line = "error";      // error | skip (skipped lines are counted)
  bool shuffle = true;
};

/// The `data` section of a training config: a training file, an optional held-out file, and the
/// record layout both share.
struct DataConfig {
  std::string train;  // empty: the built-in task
  std::string eval;
  std::string prompt_field = "question";
  std::string answer_field = "answer";
  std::string answer_after;
  std::string on_bad_line = "error";
  bool shuffle = true;

  JsonlDatasetConfig file(const std::string& path) const {
    return {path, prompt_field, answer_field, answer_after, on_bad_line, shuffle};
  }

  void visit(core::ConfigVisitor& v) {
    v.field("train", train, "JSONL file of training prompts, one object per line; empty = the "
            "built-in task (see task)");
    v.field("eval", eval, "JSONL file of held-out prompts (same fields), evaluated in file order; "
            "empty = no evaluation");
    v.field("prompt_field", prompt_field, "key of the question (dots reach into nested objects: "
            "messages.0.content)");
    v.field("answer_field", answer_field, "key of the ground-truth answer");
    v.field("answer_after", answer_after, "the answer is the text after the last occurrence of "
            "this marker, trimmed (GSM8K: '####'); a line without it is a bad line; empty = the "
            "whole field");
    v.field("on_bad_line", on_bad_line,
            "a malformed line stops with an error naming file and line, or is skipped and counted",
            {"error", "skip"});
    v.field("shuffle", shuffle, "seeded reshuffle every epoch (otherwise file order)");
  }
};

struct Example {
  std::string prompt;
  std::string answer;
  std::string system;  // chat lines only: the conversation's system message
  int64_t line = 0;    // 1-based line in the file
};

class JsonlDataset {
 public:
  /// Reads the whole file. Errors name the file and line ("data.jsonl:17: ...").
  JsonlDataset(const JsonlDatasetConfig& config, uint64_t seed);
  int64_t size() const { return static_cast<int64_t>(examples_.size()); }
  /// The example at `position` of the endless stream: epoch = position / size, each epoch a
  /// fresh permutation of (seed, epoch). A pure function of position.
  const Example& sample(int64_t position) const;
  /// Examples in file order.
  const std::vector<Example>& examples() const { return examples_; }
  int64_t skipped_lines() const { return skipped_; }

 private:
  std::vector<Example> examples_;
  JsonlDatasetConfig config_;
  uint64_t seed_;
  int64_t skipped_ = 0;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> perm_;
};

}  // namespace grpo::data
