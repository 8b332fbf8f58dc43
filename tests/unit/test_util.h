// Helpers shared by the unit tests.
#pragma once

#include <filesystem>
#include <fstream>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "grpo/core/error.h"

namespace grpo::test_util {

/// The message of the grpo::Error that `f` throws, or "" when it throws none.
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

/// A fresh, empty directory under the test build's tmp/ (removed first if it exists).
inline std::string tmpdir(const std::string& name) {
  auto d = std::filesystem::path(GRPO_TEST_TMPDIR) / name;
  std::filesystem::remove_all(d);
  std::filesystem::create_directories(d);
  return d.string();
}

/// Runs a shell command; its stdout and stderr together, and its exit status in *rc.
inline std::string run_command(const std::string& cmd, int* rc) {
  std::string out_path = (std::filesystem::path(GRPO_TEST_TMPDIR) / "cmd_out.txt").string();
  *rc = std::system((cmd + " > " + out_path + " 2>&1").c_str());
  std::ifstream in(out_path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The JSON objects of a JSONL file (blank lines skipped).
inline std::vector<nlohmann::json> read_jsonl(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace grpo::test_util
