// CRC-32C (Castagnoli, the checksum of iSCSI, ext4 metadata and Cloud Storage objects): checkpoint
// manifests record one per file and loading verifies it. Uses the SSE4.2 crc32 instruction where
// the CPU has it (every x86-64 CPU since 2008), else a table-driven software version.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace grpo::io {

/// Continues `crc` (0 to start) over `n` bytes.
uint32_t crc32c(const void* data, size_t n, uint32_t crc = 0);

/// The software version alone (tests compare it with the hardware one).
uint32_t crc32c_portable(const void* data, size_t n, uint32_t crc = 0);

/// A whole file's CRC-32C and size, read in chunks; throws grpo::Error naming the path.
struct FileDigest {
  uint32_t crc32c = 0;
  uint64_t bytes = 0;
};
FileDigest digest_file(const std::string& path);

/// "0x" and 8 hex digits.
std::string crc32c_text(uint32_t crc);

}  // namespace grpo::io
