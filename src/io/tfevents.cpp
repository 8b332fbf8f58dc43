// TensorBoard event files. The protocol buffers (tensorflow/core/util/event.proto, summary.proto,
// tensor.proto), only the fields written here:
//   Event          1 wall_time double, 2 step int64, 3 file_version string, 5 summary Summary
//   Summary        1 value repeated Value
//   Summary.Value  1 tag string, 2 simple_value float, 8 tensor TensorProto, 9 metadata SummaryMetadata
//   SummaryMetadata 1 plugin_data PluginData { 1 plugin_name string }
//   TensorProto    1 dtype enum (7 = DT_STRING), 2 tensor_shape TensorShapeProto (empty: a scalar),
//                  8 string_val repeated bytes
#include "grpo/io/tfevents.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include <fmt/format.h>

#include "grpo/core/error.h"
#include "grpo/io/crc32c.h"

namespace grpo::io {
namespace fs = std::filesystem;

namespace {

// ---- protocol buffer wire format
void varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out.push_back(char((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(char(v));
}
void key(std::string& out, int field, int wire_type) { varint(out, uint64_t(field) << 3 | uint64_t(wire_type)); }
void bytes_field(std::string& out, int field, const std::string& b) {
  key(out, field, 2);
  varint(out, b.size());
  out += b;
}
template <typename T>
void fixed_field(std::string& out, int field, T v) {  // little-endian, as x86-64 stores it
  key(out, field, sizeof(T) == 8 ? 1 : 5);
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

std::string event(double wall_time, int64_t step, const std::string& summary_value) {
  std::string e, summary;
  fixed_field(e, 1, wall_time);
  key(e, 2, 0);
  varint(e, uint64_t(step));
  bytes_field(summary, 1, summary_value);
  bytes_field(e, 5, summary);
  return e;
}

void put_le(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(char(v >> (8 * i) & 0xff));
}
uint64_t get_le(const char* p, int n) {
  uint64_t v = 0;
  for (int i = 0; i < n; ++i) v |= uint64_t(uint8_t(p[i])) << (8 * i);
  return v;
}

std::string host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || !buf[0]) return "localhost";
  return buf;
}

}  // namespace

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t crc = crc32c(data, n);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

TfEventWriter::TfEventWriter(const std::string& dir, double wall_time) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  GRPO_CHECK(!ec, "cannot create the TensorBoard directory '{}': {}", dir, ec.message());
  path_ = (fs::path(dir) / fmt::format("events.out.tfevents.{}.{}.{}", int64_t(wall_time), host_name(), ::getpid()))
              .string();
  out_.open(path_, std::ios::binary | std::ios::app);
  GRPO_CHECK(out_.is_open(), "cannot open '{}' for writing: {}", path_, std::strerror(errno));
  std::string e;
  fixed_field(e, 1, wall_time);
  bytes_field(e, 3, "brain.Event:2");
  record(e);
}

void TfEventWriter::scalar(const std::string& tag, int64_t step, double value, double wall_time) {
  std::string v;
  bytes_field(v, 1, tag);
  fixed_field(v, 2, float(value));
  record(event(wall_time, step, v));
}

void TfEventWriter::text(const std::string& tag, int64_t step, const std::string& text, double wall_time) {
  std::string plugin, metadata, tensor, v;
  bytes_field(plugin, 1, "text");
  bytes_field(metadata, 1, plugin);
  key(tensor, 1, 0);
  varint(tensor, 7);  // DT_STRING
  bytes_field(tensor, 2, "");
  bytes_field(tensor, 8, text);
  bytes_field(v, 1, tag);
  bytes_field(v, 8, tensor);
  bytes_field(v, 9, metadata);
  record(event(wall_time, step, v));
}

void TfEventWriter::record(const std::string& data) {
  std::string r, len;
  put_le(len, data.size(), 8);
  r += len;
  put_le(r, masked_crc32c(len.data(), len.size()), 4);
  r += data;
  put_le(r, masked_crc32c(data.data(), data.size()), 4);
  out_.write(r.data(), std::streamsize(r.size()));
  out_.flush();
  GRPO_CHECK(out_.good(), "error while writing '{}': {}", path_, std::strerror(errno));
}

std::vector<std::string> read_tfrecords(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  GRPO_CHECK(in.is_open(), "cannot open '{}': {}", path, std::strerror(errno));
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> out;
  size_t at = 0;
  while (at < all.size()) {
    GRPO_CHECK(all.size() - at >= 12, "{}: record at byte {} is cut off in its header ({} bytes left, 12 needed)",
               path, at, all.size() - at);
    const uint64_t n = get_le(&all[at], 8);
    GRPO_CHECK(uint32_t(get_le(&all[at + 8], 4)) == masked_crc32c(&all[at], 8),
               "{}: record at byte {}: the checksum of its length does not match", path, at);
    GRPO_CHECK(all.size() - at - 12 >= n + 4, "{}: record at byte {} is cut off: {} data bytes and a checksum "
               "expected, {} bytes left", path, at, n, all.size() - at - 12);
    const char* data = &all[at + 12];
    GRPO_CHECK(uint32_t(get_le(data + n, 4)) == masked_crc32c(data, n),
               "{}: record at byte {}: the checksum of its {} data bytes does not match", path, at, n);
    out.emplace_back(data, n);
    at += 12 + n + 4;
  }
  return out;
}

}  // namespace grpo::io
