// The tools' flag table (tools/common/tool_flags.h): --help is generated from it, with the defaults
// of the params structs; values parse whole or fail naming the flag; flags of another tool and
// unknown flags are errors; `--name=value` works everywhere.
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../../../tools/common/tool_flags.h"
#include "../test_util.h"

using namespace grpo::tools;
using grpo::test_util::error_of;

namespace {

void parse(Tool tool, std::vector<std::string> args, ToolParams& p) {
  args.insert(args.begin(), "tool");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  tool_flags(p).parse(tool, int(argv.size()), argv.data(), p);
}

std::string usage(Tool tool) {
  ToolParams p;
  std::ostringstream os;
  tool_flags(p).usage(os, tool, tool_info(tool).about);
  return os.str();
}

}  // namespace

TEST(ToolFlags, HelpIsGeneratedWithTheStructsDefaults) {
  const std::string exp = usage(Tool::kExport);
  EXPECT_NE(exp.find("usage: grpo_export"), std::string::npos) << exp;
  EXPECT_NE(exp.find("--max-shard-bytes"), std::string::npos) << exp;
  EXPECT_NE(exp.find("(default: " + std::to_string(grpo::model::HfExportOptions{}.max_shard_bytes) + ")"),
            std::string::npos) << exp;
  EXPECT_EQ(exp.find("--num-samples"), std::string::npos) << "a flag of grpo_generate only: " << exp;
  for (Tool t : {Tool::kTrain, Tool::kGenerate, Tool::kEval, Tool::kSample, Tool::kExport, Tool::kPlan,
                 Tool::kReward, Tool::kTokenize}) {
    const std::string u = usage(t);
    EXPECT_NE(u.find(std::string("usage: ") + tool_info(t).name), std::string::npos) << u;
    EXPECT_NE(u.find("--help"), std::string::npos) << u;
  }
}

TEST(ToolFlags, ValuesParseWholeOrFailNamingTheFlag) {
  ToolParams p;
  parse(Tool::kExport, {"--from", "a", "--out=b", "--max-shard-bytes", "4096"}, p);
  EXPECT_EQ(p.export_.from, "a");
  EXPECT_EQ(p.export_.out, "b");
  EXPECT_EQ(p.export_.options.max_shard_bytes, 4096u);
  ToolParams q;
  auto msg = error_of([&] { parse(Tool::kExport, {"--max-shard-bytes", "-5"}, q); });
  EXPECT_NE(msg.find("--max-shard-bytes"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'-5'"), std::string::npos) << msg;
  msg = error_of([&] { parse(Tool::kExport, {"--num-samples", "3"}, q); });  // grpo_generate's
  EXPECT_NE(msg.find("--num-samples"), std::string::npos) << msg;
  msg = error_of([&] { parse(Tool::kTokenize, {"--nonsense"}, q); });
  EXPECT_NE(msg.find("--nonsense"), std::string::npos) << msg;
  msg = error_of([&] { parse(Tool::kTokenize, {"--tokenizer"}, q); });
  EXPECT_NE(msg.find("--tokenizer needs a value"), std::string::npos) << msg;
  // counts that size the work have a range, checked before anything is allocated
  msg = error_of([&] { parse(Tool::kGenerate, {"-n", "100000000"}, q); });
  EXPECT_NE(msg.find("-n: expected an integer in [1, 65536], found 100000000"), std::string::npos) << msg;
  msg = error_of([&] { parse(Tool::kEval, {"-k", "0"}, q); });
  EXPECT_NE(msg.find("-k: expected an integer in [1, 65536], found 0"), std::string::npos) << msg;
  parse(Tool::kEval, {"-k", "65536"}, q);
  EXPECT_EQ(q.eval.options.k, 65536);
}

// The sampling tools refuse, before generating, a batch whose KV cache cannot fit in memory.
TEST(ToolFlags, ABatchWhoseKvCacheCannotFitIsRefusedBeforeGenerating) {
  grpo::model::ModelConfig m;
  m.hidden_size = 32;
  m.num_hidden_layers = 2;
  m.num_attention_heads = 2;
  m.num_key_value_heads = 2;
  m.intermediate_size = 48;
  m.vocab_size = 20;
  m.max_position_embeddings = 1'000'000;
  grpo::model::Transformer model(m);
  PolicyFlags f;
  f.batch_size = 16;
  // 16 prompts x 64 samples x ~900k tokens x (2 layers x 2 x 32 x 4 B) = ~220 GiB, beyond any CI machine
  auto msg = error_of([&] { f.check_memory(model, 100, 64, 900'000); });
  EXPECT_NE(msg.find("generating 1024 sequences at once (16 prompts x 64 samples) of up to 900256 tokens"),
            std::string::npos) << msg;
  EXPECT_NE(msg.find("lower --batch-size"), std::string::npos) << msg;
  EXPECT_NO_THROW(f.check_memory(model, 1, 1, 64));
}
