// Encode throughput of grpo's HfTokenizer on a corpus (JSON string per line), one thread.
// usage: grpo_bench_tokenizer TOKENIZER_JSON CORPUS_JSONL [repeats]
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "grpo/text/hf_tokenizer.h"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER_JSON CORPUS_JSONL [repeats]\n", argv[0]);
    return 2;
  }
  int repeats = argc > 3 ? std::atoi(argv[3]) : 20;
  auto tok = grpo::text::HfTokenizer::from_file(argv[1]);
  std::vector<std::string> corpus;
  std::ifstream in(argv[2]);
  size_t bytes = 0;
  for (std::string line; std::getline(in, line);) {
    corpus.push_back(nlohmann::json::parse(line).get<std::string>());
    bytes += corpus.back().size();
  }
  size_t tokens = 0;
  for (auto& s : corpus) tokens += tok->encode(s).size();  // warm-up (fills the BPE cache, as HF's)
  auto t0 = std::chrono::steady_clock::now();
  for (int r = 0; r < repeats; ++r)
    for (auto& s : corpus) tokens += tok->encode(s).size();
  double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("grpo        %8.2f MB/s  %10.0f tokens/s  (%zu strings x %d, %.2f s)\n",
              bytes * repeats / sec / 1e6, double(tokens) / (repeats + 1) * repeats / sec, corpus.size(),
              repeats, sec);
  return 0;
}
