// Any bytes as a tokenizer.json: loading either succeeds (then encoding and decoding a few
// strings works) or throws grpo::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "grpo/core/error.h"
#include "grpo/text/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    auto tok = grpo::text::HfTokenizer::from_json(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
    for (const char* s : {"", "hello world", "a  b\n\n", "\xe4\xbd\xa0\xe5\xa5\xbd 123"}) {
      try {
        auto ids = tok->encode(s);
        tok->decode(ids);
      } catch (const grpo::Error&) {
      }
    }
  } catch (const grpo::Error&) {
  }
  return 0;
}
