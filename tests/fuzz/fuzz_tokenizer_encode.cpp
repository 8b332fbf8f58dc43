// Any bytes as text for the real Qwen3 and DeepSeek-V3 tokenizers: encode either succeeds or
// rejects invalid UTF-8 with grpo::Error; decode(encode(x)) == x for NFC-stable text without
// special-token strings; any id sequence decodes.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "grpo/core/error.h"
#include "grpo/text/hf_tokenizer.h"

namespace {
std::unique_ptr<grpo::text::HfTokenizer> g_tok[2];
}

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  g_tok[0] = grpo::text::HfTokenizer::from_file(GRPO_SOURCE_DIR "/tests/fixtures/tokenizers/deepseek_v3/tokenizer.json");
  g_tok[1] = grpo::text::HfTokenizer::from_file(GRPO_SOURCE_DIR "/tests/fixtures/tokenizers/qwen3/tokenizer.json");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  for (int k = 0; k < 2; ++k) {
    auto& tok = *g_tok[k];
    std::vector<int64_t> ids;
    try {
      ids = tok.encode(text);
    } catch (const grpo::Error&) {
      continue;  // invalid UTF-8
    }
    // DeepSeek-V3 has no normalizer and its added tokens are ordinary text: exact round trip
    if (k == 0 && tok.decode(ids) != text) __builtin_trap();
    std::vector<int64_t> any;
    for (size_t i = 0; i + 1 < size; i += 2)
      any.push_back((data[i] | (data[i + 1] << 8)) % tok.vocab_size());
    try {
      tok.decode(any);
    } catch (const grpo::Error&) {  // ids that are holes in the vocabulary
    }
  }
  return 0;
}
