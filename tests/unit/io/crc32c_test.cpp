// CRC-32C: the standard check values (RFC 3720 B.4), the hardware and software versions agree on
// every length and alignment, and continuing a CRC over pieces equals one pass.
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "grpo/io/crc32c.h"
#include "../test_util.h"

using grpo::io::crc32c;
using grpo::io::crc32c_portable;

TEST(Crc32c, StandardCheckValues) {
  const std::string digits = "123456789";
  EXPECT_EQ(crc32c(digits.data(), digits.size()), 0xE3069283u);
  EXPECT_EQ(crc32c_portable(digits.data(), digits.size()), 0xE3069283u);
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), up(32), down(32);
  for (int i = 0; i < 32; ++i) up[i] = uint8_t(i), down[i] = uint8_t(31 - i);
  for (auto f : {crc32c, crc32c_portable}) {
    EXPECT_EQ(f(zeros.data(), 32, 0), 0x8A9136AAu);
    EXPECT_EQ(f(ones.data(), 32, 0), 0x62A8AB43u);
    EXPECT_EQ(f(up.data(), 32, 0), 0x46DD794Eu);
    EXPECT_EQ(f(down.data(), 32, 0), 0x113FDB5Cu);
    EXPECT_EQ(f(nullptr, 0, 0), 0u);
  }
  EXPECT_EQ(grpo::io::crc32c_text(0xE3069283u), "0xe3069283");
}

TEST(Crc32c, HardwareAndSoftwareAgreeAndPiecesCompose) {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(4096 + 16);
  for (auto& b : buf) b = uint8_t(rng());
  for (size_t offset = 0; offset < 9; ++offset)
    for (size_t n : {size_t(0), size_t(1), size_t(7), size_t(8), size_t(9), size_t(63), size_t(4096)}) {
      const uint32_t whole = crc32c(buf.data() + offset, n);
      EXPECT_EQ(whole, crc32c_portable(buf.data() + offset, n)) << offset << " " << n;
      const size_t half = n / 3;
      EXPECT_EQ(crc32c(buf.data() + offset + half, n - half, crc32c(buf.data() + offset, half)), whole);
    }
}

TEST(Crc32c, FileDigestCoversEveryByte) {
  auto dir = grpo::test_util::tmpdir("crc_file");
  std::string data(5'000'003, 'x');
  data[4'194'304] = 'y';  // past the first 4 MiB chunk
  grpo::test_util::write_bytes(dir + "/f", data);
  auto d = grpo::io::digest_file(dir + "/f");
  EXPECT_EQ(d.bytes, data.size());
  EXPECT_EQ(d.crc32c, crc32c(data.data(), data.size()));
  data[4'194'304] = 'x';
  EXPECT_NE(d.crc32c, crc32c(data.data(), data.size()));
  EXPECT_NE(grpo::test_util::error_of([&] { grpo::io::digest_file(dir + "/missing"); }).find(dir + "/missing"),
            std::string::npos);
}
