// Training from a Hugging Face directory: model.path, the tokenizer directory, JSONL data, prompt
// formatting (template + chat format + BOS, one function for training, evaluation and
// generation), resume, and the grpo_generate / grpo_export command lines on the result.
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/model/hf.h"
#include "grpo/model/transformer.h"
#include "grpo/reward/reward.h"
#include "grpo/text/chat_template.h"
#include "grpo/text/hf_tokenizer.h"
#include "grpo/text/prompt.h"
#include "grpo/text/tokenizer.h"
#include "grpo/train/config.h"
#include "grpo/train/trainer.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace grpo;
using grpo::test_util::run_command;
using grpo::test_util::error_of;
using grpo::test_util::read_jsonl;
using grpo::test_util::tmpdir;

namespace {

const std::string kFixtures = std::string(GRPO_SOURCE_DIR) + "/tests/fixtures";
const std::string kQwen3Tok = kFixtures + "/tokenizers/qwen3";
const std::string kDeepSeekTok = kFixtures + "/tokenizers/deepseek_v3";



// A tiny random Qwen2 model with the real Qwen3 tokenizer, written as an HF directory (made once).
const std::string& hf_model_dir() {
  static const std::string dir = [] {
    auto d = tmpdir("hf_tiny_qwen2_" + std::to_string(::getpid()));  // ctest -j runs tests in parallel processes
    model::ModelConfig c;
    c.model_type = "qwen2";
    c.vocab_size = 151680;  // >= the tokenizer's 151669, as Qwen pads its embeddings
    c.hidden_size = 16;
    c.num_hidden_layers = 1;
    c.num_attention_heads = 2;
    c.num_key_value_heads = 1;
    c.intermediate_size = 32;
    c.max_position_embeddings = 128;
    c.attention_bias = true;
    c.tie_word_embeddings = true;
    at::manual_seed(5);
    model::Transformer m(c);
    model::HfExportOptions o;
    o.tokenizer_dir = kQwen3Tok;
    model::save_hf_model(m, d, o);
    return d;
  }();
  return dir;
}

std::string config_error(const std::string& yaml) {
  try {
    train::load_config_text(yaml, "t.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

void write_file(const std::string& path, const std::string& text) { std::ofstream(path) << text; }


}  // namespace

TEST(Prompt, TemplateThenChatFormatThenBos) {
  text::PromptConfig p;
  p.template_text = "r1_zero";
  EXPECT_EQ(text::format_prompt(p, "1+1"), text::apply_template(text::kR1ZeroTemplate, "1+1"));
  p.template_text = "Q: {prompt}\nA:";
  p.chat = "qwen3";
  p.system = "Be brief.";
  EXPECT_EQ(text::format_prompt(p, "2+2"),
            text::apply_chat_template(text::ChatFormat::kQwen3,
                                      {{"system", "Be brief."}, {"user", "Q: 2+2\nA:"}}, true));
  p.thinking = "off";
  auto off = text::format_prompt(p, "2+2");
  EXPECT_EQ(off.substr(off.size() - 19), "<think>\n\n</think>\n\n") << off;

  auto ds = text::HfTokenizer::from_dir(kDeepSeekTok);
  text::PromptConfig b;
  b.add_bos = true;
  auto ids = text::encode_prompt(b, *ds, "hello");
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids[0], *ds->token_id("<｜begin▁of▁sentence｜>"));
  EXPECT_EQ(std::vector<int64_t>(ids.begin() + 1, ids.end()), ds->encode("hello"));
  auto qwen = text::HfTokenizer::from_dir(kQwen3Tok);
  EXPECT_NE(error_of([&] { text::encode_prompt(b, *qwen, "hello"); }).find("no BOS"), std::string::npos);
}

TEST(Prompt, InvalidCombinationsNameTheKey) {
  core::ConfigSource src;
  auto check = [&](text::PromptConfig p, const std::string& key) {
    auto e = error_of([&] { text::validate_prompt_config(p, src); });
    EXPECT_NE(e.find("prompt." + key), std::string::npos) << e;
  };
  text::PromptConfig p;
  p.system = "x";
  check(p, "system");
  p = {};
  p.thinking = "off";
  check(p, "thinking");
  p = {};
  p.chat = "deepseek_v3";
  p.add_bos = true;
  check(p, "add_bos");
  p = {};
  p.template_text = "no placeholder";
  check(p, "template");
  p.template_text = "{question}";
  check(p, "template");
}

TEST(HfTokenizerDir, SpecialTokensComeFromTokenizerConfig) {
  auto q = text::HfTokenizer::from_dir(kQwen3Tok);
  EXPECT_EQ(q->eos_id(), *q->token_id("<|im_end|>"));     // tokenizer_config.json eos_token
  EXPECT_EQ(q->pad_id(), *q->token_id("<|endoftext|>"));  // pad_token
  EXPECT_FALSE(q->bos_id().has_value());                  // bos_token: null
  auto d = text::HfTokenizer::from_dir(kDeepSeekTok);     // tokens given as AddedToken objects
  EXPECT_EQ(d->eos_id(), *d->token_id("<｜end▁of▁sentence｜>"));
  EXPECT_EQ(d->bos_id(), d->token_id("<｜begin▁of▁sentence｜>"));
  auto o = text::HfTokenizer::from_dir(kQwen3Tok, "<|endoftext|>");
  EXPECT_EQ(o->eos_id(), *q->token_id("<|endoftext|>"));
  EXPECT_NE(error_of([&] { text::HfTokenizer::from_dir(kQwen3Tok, "<|nope|>"); }).find("<|nope|>"),
            std::string::npos);
  EXPECT_NE(error_of([&] { text::HfTokenizer::from_dir(kFixtures + "/hf/llama"); }).find("no tokenizer.json"),
            std::string::npos);
}

TEST(Config, ModelPathProvidesTheArchitecture) {
  const auto& dir = hf_model_dir();
  auto c = train::load_config_text("model: {path: " + dir + "}\nrollout: {max_new_tokens: 8}\n", "t.yaml");
  EXPECT_EQ(c.model.model_type, "qwen2");
  EXPECT_EQ(c.model.hidden_size, 16);
  EXPECT_EQ(c.model.vocab_size, 151680);
  EXPECT_TRUE(c.model.tie_word_embeddings);
  EXPECT_EQ(c.model.path, dir);
  // agreeing sizes are fine (a resolved config.yaml lists them all); disagreeing ones are errors
  EXPECT_NO_THROW(train::load_config_text("model: {path: " + dir + ", hidden_size: 16}\n", "t.yaml"));
  auto e = config_error("model:\n  path: " + dir + "\n  hidden_size: 64\n");
  EXPECT_NE(e.find("t.yaml:3:"), std::string::npos) << e;
  EXPECT_NE(e.find("model.hidden_size"), std::string::npos) << e;
  EXPECT_NE(e.find("config.json says 16"), std::string::npos) << e;

  auto missing = config_error("model: {path: /nonexistent/model}\n");
  EXPECT_NE(missing.find("model.path"), std::string::npos) << missing;
  EXPECT_NE(missing.find("/nonexistent/model/config.json"), std::string::npos) << missing;
  auto no_tok = config_error("model: {path: " + kFixtures + "/hf/llama}\nrollout: {max_new_tokens: 8}\n");
  EXPECT_NE(no_tok.find("tokenizer.path"), std::string::npos) << no_tok;
  EXPECT_NE(no_tok.find("no tokenizer.json"), std::string::npos) << no_tok;
}

TEST(Config, DatasetRules) {
  const auto& dir = hf_model_dir();
  auto data = tmpdir("data_rules") + "/train.jsonl";
  write_file(data, "{\"question\": \"1+1\", \"answer\": \"2\"}\n");
  const std::string base = "model: {path: " + dir + "}\nrollout: {max_new_tokens: 8}\n";
  EXPECT_NO_THROW(train::load_config_text(base + "data: {train: " + data + "}\n", "t.yaml"));
  auto pre = config_error(base + "data: {train: " + data + "}\npretrain: {steps: 10}\n");
  EXPECT_NE(pre.find("pretrain.steps"), std::string::npos) << pre;
  auto task = config_error(base + "data: {train: " + data + "}\ntask: {digits: 4}\n");
  EXPECT_NE(task.find("task.digits"), std::string::npos) << task;
  auto eval_only = config_error(base + "data: {eval: " + data + "}\n");
  EXPECT_NE(eval_only.find("data.eval"), std::string::npos) << eval_only;
  auto missing = config_error(base + "data: {train: /no/such.jsonl}\n");
  EXPECT_NE(missing.find("data.train"), std::string::npos) << missing;
  EXPECT_NE(missing.find("/no/such.jsonl"), std::string::npos) << missing;
  auto char_tok = config_error("data: {train: " + data + "}\n");
  EXPECT_NE(char_tok.find("real tokenizer"), std::string::npos) << char_tok;
  auto chat = config_error("prompt: {chat: qwen3}\n");  // the built-in character tokenizer
  EXPECT_NE(chat.find("prompt.chat"), std::string::npos) << chat;
}

// A reward a random policy earns sometimes (so advantages, losses and updates are not all zero):
// the byte length of the completion modulo 5, scaled to [0, 1].
class LengthModReward : public reward::RewardFn {
 public:
  double score(const std::string& completion, const std::string&) const override {
    return double(completion.size() % 5) / 4.0;
  }
};

TEST(TrainFromHf, JsonlDataChatPromptResumeGenerateExport) {
  reward::RewardRegistry::add("test_length_mod5", [] { return std::make_unique<LengthModReward>(); });
  const auto& model_dir = hf_model_dir();
  auto root = tmpdir("train_from_hf");
  std::string train_lines, eval_lines;
  for (int i = 0; i < 7; ++i)
    train_lines += nlohmann::json{{"q", {{"text", fmt::format("What is {} plus {}?", i, 2 * i)}}},
                                  {"a", std::to_string(3 * i)}}.dump() + "\n";
  train_lines += "{not json\n";  // skipped and counted (on_bad_line: skip)
  for (int i = 0; i < 3; ++i)
    eval_lines += nlohmann::json{{"q", {{"text", fmt::format("What is {} times 2?", i)}}},
                                 {"a", std::to_string(2 * i)}}.dump() + "\n";
  write_file(root + "/train.jsonl", train_lines);
  write_file(root + "/eval.jsonl", eval_lines);
  auto config = [&](const std::string& run) {
    auto c = train::load_config_text(
        "run: {seed: 4, threads: 1}\n"
        "model: {path: " + model_dir + "}\n"
        "data: {train: " + root + "/train.jsonl, eval: " + root + "/eval.jsonl, prompt_field: q.text, "
        "answer_field: a, on_bad_line: skip}\n"
        "prompt: {template: r1_zero, chat: qwen3, system: Answer briefly.}\n"
        "rollout: {max_new_tokens: 6}\n"
        "grpo: {rollout_steps: 3, prompts_per_step: 3, group_size: 2, kl_coef: 0.1}\n"
        "optim: {lr: 1.0e-2}\n"
        "reward: {weights: {test_length_mod5: 1.0}}\n"
        "eval: {every: 2, num_prompts: 10, batch_size: 2}\n"
        "checkpoint: {every: 1, keep: 5}\n", "hf.yaml");
    c.run.dir = root + "/" + run;
    return c;
  };
  {
    train::Trainer t(config("a"));
    t.run();
  }
  {
    train::Trainer t(config("b"));
    t.run([](const train::TrainState& s) { return s.rollout_step == 1; });
  }
  train::Trainer resumed(config("b"));
  resumed.run();
  auto ma = read_jsonl(root + "/a/metrics.jsonl"), mb = read_jsonl(root + "/b/metrics.jsonl");
  ASSERT_EQ(ma.size(), 3u);
  ASSERT_EQ(mb.size(), 3u);
  for (size_t i = 0; i < ma.size(); ++i) {
    EXPECT_EQ(ma[i]["loss"].get<double>(), mb[i]["loss"].get<double>()) << i;
    EXPECT_EQ(ma[i]["reward_mean"].get<double>(), mb[i]["reward_mean"].get<double>()) << i;
    EXPECT_GT(ma[i]["grad_norm"].get<double>(), 0.0) << i;  // the policy is really updated
  }
  EXPECT_GT(ma.back()["kl"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(ma.back()["epoch"].get<double>(), 9.0 / 7.0);  // 3 steps x 3 of 7 examples
  auto ev = read_jsonl(root + "/a/eval.jsonl");
  ASSERT_EQ(ev.size(), 3u);  // start, step 2, end
  EXPECT_EQ(ev[0]["num_prompts"], 3);  // the whole held-out file (num_prompts is 10)
  EXPECT_NO_THROW(train::load_config_file(root + "/a/config.yaml"));

  // The checkpoint loads back as a policy with the run's settings.
  train::Config ck_cfg;
  auto ck = root + "/a/checkpoints/step-000003";
  auto policy = train::load_policy(ck, &ck_cfg);
  EXPECT_EQ(ck_cfg.prompt.chat, "qwen3");
  auto trained = resumed.policy().named_parameters();
  auto loaded = policy->named_parameters();
  ASSERT_EQ(trained.size(), loaded.size());
  for (size_t i = 0; i < trained.size(); ++i)
    EXPECT_TRUE(trained[i].second.equal(loaded[i].second)) << trained[i].first;

  // grpo_generate on the checkpoint formats prompts exactly as training did.
  int rc = 0;
  auto out = run_command(std::string(GRPO_BIN_DIR) + "/grpo_generate --model " + ck +
                             " --prompt 'What is 5 plus 1?' -n 3 --temperature 1 --max-new-tokens 5",
                         &rc);
  ASSERT_EQ(rc, 0) << out;
  auto j = nlohmann::json::parse(out.substr(0, out.find('\n')));
  EXPECT_EQ(j["prompt"], text::format_prompt(ck_cfg.prompt, "What is 5 plus 1?"));
  ASSERT_EQ(j["completions"].size(), 3u);
  for (auto& c : j["completions"]) {
    EXPECT_LE(c["token_ids"].size(), 5u);
    EXPECT_TRUE(c.contains("text"));
  }
  auto bad = run_command(std::string(GRPO_BIN_DIR) + "/grpo_generate --model " + ck +
                             " --prompt x --chat llama2", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(bad.find("--chat"), std::string::npos) << bad;
  auto too_long = run_command(std::string(GRPO_BIN_DIR) + "/grpo_generate --model " + model_dir +
                                  " --prompt x --max-new-tokens 500", &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(too_long.find("max_position_embeddings 128"), std::string::npos) << too_long;

  // grpo_export of the checkpoint carries the run's tokenizer and its EOS.
  out = run_command(std::string(GRPO_BIN_DIR) + "/grpo_export --from " + ck + " --out " + root + "/export", &rc);
  ASSERT_EQ(rc, 0) << out;
  EXPECT_TRUE(fs::exists(root + "/export/tokenizer.json"));
  auto gen = nlohmann::json::parse(core::read_file(root + "/export/generation_config.json"));
  EXPECT_EQ(gen["eos_token_id"], *text::HfTokenizer::from_dir(kQwen3Tok)->token_id("<|im_end|>"));
}
