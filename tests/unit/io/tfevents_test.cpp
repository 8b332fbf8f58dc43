// TensorBoard event files: TFRecord framing and checksums, the Event bytes of a scalar (decoded here by
// the protocol buffer wire rules), bad files, and which metrics become which tags. That the files
// read back in the real tensorboard package is report.tensorboard_roundtrip (tests/CMakeLists.txt).
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/io/crc32c.h"
#include "grpo/io/tfevents.h"
#include "grpo/train/run_dir.h"
#include "../test_util.h"

namespace fs = std::filesystem;
using namespace grpo;
using grpo::test_util::error_of;
using grpo::test_util::tmpdir;

namespace {

// The fields of one protocol buffer message: field number -> raw bytes of its value (varints as
// their value in 8 little-endian bytes), the last occurrence of each.
std::map<int, std::string> fields(const std::string& m) {
  std::map<int, std::string> out;
  size_t i = 0;
  auto varint = [&] {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      const uint8_t b = uint8_t(m.at(i++));
      v |= uint64_t(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < m.size()) {
    const uint64_t k = varint();
    const int field = int(k >> 3), type = int(k & 7);
    if (type == 0) {
      const uint64_t v = varint();
      out[field] = std::string(reinterpret_cast<const char*>(&v), 8);
    } else if (type == 1 || type == 5) {
      out[field] = m.substr(i, type == 1 ? 8 : 4);
      i += type == 1 ? 8 : 4;
    } else {
      EXPECT_EQ(type, 2);
      const uint64_t n = varint();
      out[field] = m.substr(i, n);
      i += n;
    }
  }
  return out;
}

template <typename T>
T as(const std::string& b) {
  T v{};
  EXPECT_EQ(b.size(), sizeof(T));
  std::memcpy(&v, b.data(), sizeof(T));
  return v;
}

}  // namespace

TEST(TfEvents, MaskedCrcIsTheRotatedCrc32cPlusTheTfRecordDelta) {
  const uint32_t crc = 0xE3069283u;  // CRC-32C of "123456789", the standard check value
  EXPECT_EQ(io::crc32c("123456789", 9), crc);
  EXPECT_EQ(io::masked_crc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

TEST(TfEvents, ScalarAndTextEventsHoldTheirFields) {
  const auto dir = tmpdir("tfevents_fields");
  std::string path;
  {
    io::TfEventWriter w(dir, 1700000000.25);
    w.scalar("train/reward_mean", 7, 0.1, 1700000001.5);
    w.text("config", 3, "run: {seed: 1}", 1700000002.0);
    path = w.path();
  }
  EXPECT_EQ(fs::path(path).parent_path(), fs::path(dir));
  EXPECT_EQ(fs::path(path).filename().string().rfind("events.out.tfevents.1700000000.", 0), 0u) << path;
  const auto records = io::read_tfrecords(path);
  ASSERT_EQ(records.size(), 3u);
  auto version = fields(records[0]);
  EXPECT_EQ(as<double>(version[1]), 1700000000.25);
  EXPECT_EQ(version[3], "brain.Event:2");

  auto e = fields(records[1]);
  EXPECT_EQ(as<double>(e[1]), 1700000001.5);  // wall_time
  EXPECT_EQ(as<uint64_t>(e[2]), 7u);           // step
  auto value = fields(fields(e[5])[1]);        // Summary.value[0]
  EXPECT_EQ(value[1], "train/reward_mean");
  EXPECT_EQ(as<float>(value[2]), 0.1f);  // simple_value: float32

  auto t = fields(fields(fields(records[2])[5])[1]);
  EXPECT_EQ(t[1], "config");
  auto tensor = fields(t[8]);
  EXPECT_EQ(as<uint64_t>(tensor[1]), 7u);  // DT_STRING
  EXPECT_EQ(tensor[8], "run: {seed: 1}");
  EXPECT_EQ(fields(fields(t[9])[1])[1], "text");  // metadata.plugin_data.plugin_name
}

TEST(TfEvents, CutOrCorruptFilesAreErrorsNamingTheFileAndOffset) {
  const auto dir = tmpdir("tfevents_bad");
  std::string path;
  {
    io::TfEventWriter w(dir, 1.0);
    w.scalar("a", 1, 2.0, 3.0);
    path = w.path();
  }
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const size_t second = 12 + io::read_tfrecords(path)[0].size() + 4;
  auto write = [&](const std::string& b) {
    std::ofstream(path, std::ios::binary | std::ios::trunc) << b;
  };
  write(bytes.substr(0, bytes.size() - 3));
  auto err = error_of([&] { io::read_tfrecords(path); });
  EXPECT_NE(err.find(path), std::string::npos) << err;
  EXPECT_NE(err.find("at byte " + std::to_string(second) + " is cut off"), std::string::npos) << err;
  auto flipped = bytes;
  flipped[second + 14] ^= 0x20;  // in the second record's data
  write(flipped);
  err = error_of([&] { io::read_tfrecords(path); });
  EXPECT_NE(err.find("checksum of its"), std::string::npos) << err;
  flipped = bytes;
  flipped[second + 2] ^= 1;  // its length
  write(flipped);
  err = error_of([&] { io::read_tfrecords(path); });
  EXPECT_NE(err.find("checksum of its length"), std::string::npos) << err;
  EXPECT_NE(error_of([&] { io::TfEventWriter w("/proc/no/such/dir", 1.0); }).find("/proc/no/such/dir"),
            std::string::npos);
}

TEST(TfEvents, MetricsBecomeTagsBySection) {
  auto grpo = nlohmann::json::parse(R"({"stage": "grpo", "step": 5, "reward_mean": 0.5, "time_rollout": 1.5,
      "moe_load_max_over_mean": 1.25, "moe": {"layer_1": {"max_over_mean": 1.5, "min_over_mean": 0.5, "load": [1, 2]}},
      "updates": [{"loss": 1.0}], "wall_time": 17.0, "skipped": true, "accuracy": 1})");
  std::map<std::string, double> got;
  for (auto& [tag, v] : train::tensorboard_scalars(grpo, false)) EXPECT_TRUE(got.emplace(tag, v).second) << tag;
  const std::map<std::string, double> want{{"train/reward_mean", 0.5}, {"time/rollout", 1.5},
                                           {"moe/load_max_over_mean", 1.25}, {"moe/layer_1/max_over_mean", 1.5},
                                           {"moe/layer_1/min_over_mean", 0.5}, {"train/accuracy", 1.0}};
  EXPECT_EQ(got, want);
  auto pre = train::tensorboard_scalars(nlohmann::json::parse(R"({"stage": "pretrain", "step": 3, "loss": 2.5,
      "time_step": 0.1})"), false);
  EXPECT_EQ(pre, (std::vector<std::pair<std::string, double>>{{"pretrain/loss", 2.5}, {"pretrain/time_step", 0.1}}));
  auto ev = train::tensorboard_scalars(nlohmann::json::parse(R"({"stage": "base", "step": 0,
      "accuracy_greedy": 0.25, "num_prompts": 8})"), true);
  EXPECT_EQ(ev, (std::vector<std::pair<std::string, double>>{{"eval/accuracy_greedy", 0.25}, {"eval/num_prompts", 8}}));
}
