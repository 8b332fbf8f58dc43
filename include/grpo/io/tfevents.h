// TensorBoard event files (events.out.tfevents.*): TFRecord framing (length, masked CRC-32C of
// the length, payload, masked CRC-32C of the payload) around `Event` protocol buffers. The few
// fields a scalar or a text summary needs are encoded here by hand, so there is no protobuf
// dependency; the files read back in the `tensorboard` package (tests/CMakeLists.txt
// tensorboard.roundtrip).
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace grpo::io {

/// Appends events to one new file in a directory. Every write is flushed, so a reader (or a run
/// killed at any moment) sees whole records.
class TfEventWriter {
 public:
  /// Creates `dir` if needed and the file dir/events.out.tfevents.<unix seconds>.<host>.<pid>,
  /// which starts with the "brain.Event:2" file-version event; errors name the path.
  explicit TfEventWriter(const std::string& dir, double wall_time);
  TfEventWriter(const TfEventWriter&) = delete;
  TfEventWriter& operator=(const TfEventWriter&) = delete;

  /// A scalar summary (stored as float32, as TensorBoard's simple_value).
  void scalar(const std::string& tag, int64_t step, double value, double wall_time);
  /// A text summary (the text plugin's string tensor; markdown in TensorBoard's Text tab).
  void text(const std::string& tag, int64_t step, const std::string& text, double wall_time);

  const std::string& path() const { return path_; }

 private:
  void record(const std::string& event);
  std::string path_;
  std::ofstream out_;
};

/// The payloads of a TFRecord file, each record's two checksums verified; an error names the
/// file and the byte offset of the first bad or cut-off record.
std::vector<std::string> read_tfrecords(const std::string& path);

/// CRC-32C as TFRecord stores it: rotated right by 15 bits plus 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t n);

}  // namespace grpo::io
