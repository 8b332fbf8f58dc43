// safetensors: every dtype round-trips (header 8-byte aligned, views and empty tensors included);
// malformed files give errors that say what is wrong.
#include <fstream>
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/io/safetensors.h"
#include "../test_util.h"

using namespace grpo;
using grpo::test_util::error_of;
using grpo::test_util::tmpdir;
using grpo::test_util::write_bytes;

namespace {

std::string with_header(const std::string& json, const std::string& data) {
  std::string s(8, '\0');
  uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xff);
  return s + json + data;
}

}  // namespace

TEST(Safetensors, RoundTripAllDtypes) {
  auto dir = tmpdir("st_roundtrip");
  io::NamedTensors ts{{"f32", at::randn({3, 4})},
                      {"bf16", at::randn({5}).to(at::kBFloat16)},
                      {"i64", at::arange(7, at::kLong)},
                      {"scalar", at::scalar_tensor(3.5, at::kDouble)},
                      {"empty", at::zeros({0, 3})},
                      {"view", at::randn({4, 4}).t()}};
  io::save_safetensors(dir + "/a.safetensors", ts, {{"format", "pt"}});
  std::map<std::string, std::string> meta;
  auto back = io::load_safetensors(dir + "/a.safetensors", &meta);
  ASSERT_EQ(back.size(), ts.size());
  for (size_t i = 0; i < ts.size(); ++i) {
    EXPECT_EQ(back[i].first, ts[i].first);
    EXPECT_TRUE(back[i].second.equal(ts[i].second)) << ts[i].first;
    EXPECT_EQ(back[i].second.scalar_type(), ts[i].second.scalar_type());
  }
  EXPECT_EQ(meta["format"], "pt");
  // header is 8-byte aligned
  auto bytes = core::read_file(dir + "/a.safetensors");
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= uint64_t(uint8_t(bytes[i])) << (8 * i);
  EXPECT_EQ(n % 8, 0u);
}

TEST(Safetensors, MalformedFilesGiveClearErrors) {
  auto dir = tmpdir("st_bad");
  auto p = dir + "/bad.safetensors";
  write_bytes(p, "abc");
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("not a safetensors file"), std::string::npos);
  write_bytes(p, std::string("\xff\xff\xff\xff\x00\x00\x00\x00", 8) + "{}");
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("past the end"), std::string::npos);
  write_bytes(p, with_header("{not json", ""));
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("not valid JSON"), std::string::npos);
  write_bytes(p, with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", std::string(8, '\0')));
  auto e = error_of([&] { io::load_safetensors(p); });
  EXPECT_NE(e.find("outside the data section"), std::string::npos) << e;
  EXPECT_NE(e.find("'a'"), std::string::npos) << e;
  write_bytes(p, with_header(R"({"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')));
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("shape and dtype need 12"), std::string::npos);
  write_bytes(p, with_header(R"({"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0')));
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("unsupported dtype 'Q4'"), std::string::npos);
  write_bytes(p, with_header(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                             std::string(12, '\0')));
  EXPECT_NE(error_of([&] { io::load_safetensors(p); }).find("overlap"), std::string::npos);
  EXPECT_NE(error_of([&] { io::load_safetensors(dir + "/missing"); }).find("cannot open"), std::string::npos);
}
