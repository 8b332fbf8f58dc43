// Config loading: every recipe in configs/ parses and validates; mistakes name file, line and key;
// model.path provides the architecture and the dataset rules hold.
#include <filesystem>

#include <gtest/gtest.h>

#include "grpo/core/config.h"
#include "grpo/core/error.h"
#include "grpo/train/config.h"
#include "../test_util.h"

#include <map>

using grpo::ConfigError;
using grpo::train::Config;
using grpo::train::load_config_text;
namespace train = grpo::train;
namespace algo = grpo::algo;
using grpo::test_util::hf_model_dir;
using grpo::test_util::kFixtures;
using grpo::test_util::tmpdir;
using grpo::test_util::write_file;

namespace {

std::string error_of(const std::string& yaml, const std::vector<std::string>& overrides = {}) {
  try {
    load_config_text(yaml, "test.yaml", overrides);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

std::string config_error(const std::string& yaml) {
  try {
    train::load_config_text(yaml, "t.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// Recipes that start from downloaded weights (model.path) and datasets are read without running:
// every key must parse and validate; the built-in ones (demo, moe_tiny) load as for a run.
TEST(Config, EveryRecipeInConfigsParsesAndValidates) {
  int n = 0, runnable = 0;
  for (auto& e : std::filesystem::directory_iterator(std::string(GRPO_SOURCE_DIR) + "/configs")) {
    if (e.path().extension() != ".yaml") continue;
    SCOPED_TRACE(e.path().string());
    const auto path = e.path().string();
    grpo::train::Config c;
    EXPECT_NO_THROW(c = load_config_text(grpo::core::read_file(path), path, {}, /*to_run=*/false));
    if (c.model.path.empty()) {
      EXPECT_NO_THROW(grpo::train::load_config_file(path));
      ++runnable;
    }
    ++n;
  }
  EXPECT_GE(n, 6);
  EXPECT_GE(runnable, 2);
}

// configs/r1_zero.yaml says what the DeepSeek-R1 paper (Nature 2025) publishes; DESIGN.md lists it.
TEST(Config, R1ZeroRecipeHasThePublishedSettings) {
  const std::string p = std::string(GRPO_SOURCE_DIR) + "/configs/r1_zero.yaml";
  auto c = load_config_text(grpo::core::read_file(p), p, {}, false);
  EXPECT_EQ(c.model.model_type, "deepseek_v3");
  EXPECT_EQ(c.model.n_routed_experts, 256);
  EXPECT_DOUBLE_EQ(c.optim.lr, 3e-6);
  EXPECT_DOUBLE_EQ(c.grpo.loss.kl_coef, 0.001);
  EXPECT_EQ(c.grpo.loss.kl_estimator, algo::KlEstimator::kK3);
  EXPECT_EQ(c.grpo.kl_in, "loss");
  EXPECT_DOUBLE_EQ(c.rollout.temperature, 1.0);
  EXPECT_EQ(c.grpo.group_size, 16);
  // 8,192 outputs per rollout in 16 mini-batches of 512 outputs (32 questions) each
  EXPECT_EQ(c.grpo.prompts_per_step * c.grpo.group_size, 8192);
  EXPECT_EQ(c.grpo.mini_batches, 16);
  EXPECT_EQ(c.grpo.inner_epochs, 1);
  EXPECT_EQ(c.rollout.max_new_tokens, 32768);
  EXPECT_EQ(c.grpo.max_new_tokens_at(8199, c.rollout.max_new_tokens), 32768);
  EXPECT_EQ(c.grpo.max_new_tokens_at(8200, c.rollout.max_new_tokens), 65536);
  EXPECT_EQ(c.grpo.ref_refresh_steps, 400);
  EXPECT_DOUBLE_EQ(c.grpo.loss.clip_eps_high, 10.0);
  EXPECT_EQ(c.prompt.template_text, "r1_zero");
  EXPECT_EQ(c.reward.weights, (std::map<std::string, double>{{"accuracy", 1.0}, {"format", 1.0}}));
}

TEST(Config, ValuesAndOverridesApply) {
  auto c = load_config_text("grpo:\n  group_size: 16\nmodel:\n  hidden_size: 64\n", "t.yaml",
                            {"grpo.kl_coef=0.001", "optim.schedule=cosine"});
  EXPECT_EQ(c.grpo.group_size, 16);
  EXPECT_EQ(c.model.hidden_size, 64);
  EXPECT_DOUBLE_EQ(c.grpo.loss.kl_coef, 0.001);
  EXPECT_EQ(c.optim.schedule, "cosine");
  EXPECT_EQ(c.grpo.prompts_per_step, Config().grpo.prompts_per_step);  // default kept
}

// algo and reward own their keys (visit() beside the options they fill): named choices load into
// the options' enums, the run's loss defaults hold, and a dump loads back to the same options.
TEST(Config, AlgoAndRewardSectionsFillTheirOptionsDirectly) {
  Config d;
  EXPECT_DOUBLE_EQ(d.grpo.loss.clip_eps_low, 0.2);
  EXPECT_DOUBLE_EQ(d.grpo.loss.clip_eps_high, 0.28);
  EXPECT_EQ(d.grpo.advantage.mode, algo::AdvantageMode::kGroup);
  auto c = load_config_text("grpo: {advantage: rloo, kl_estimator: k2, importance_ratio: sequence, "
                            "loss_aggregation: seq-mean-token-sum-norm, adv_eps: 0.01}\n"
                            "reward: {language: han, overlong_buffer: 4}\n", "t.yaml", {}, false);
  EXPECT_EQ(c.grpo.advantage.mode, algo::AdvantageMode::kRloo);
  EXPECT_DOUBLE_EQ(c.grpo.advantage.eps, 0.01);
  EXPECT_EQ(c.grpo.loss.kl_estimator, algo::KlEstimator::kK2);
  EXPECT_TRUE(c.grpo.loss.sequence_ratio);
  EXPECT_EQ(c.grpo.loss.aggregation, algo::LossAggregation::kSeqMeanTokenSumNorm);
  EXPECT_EQ(c.reward.params.language, "han");
  EXPECT_EQ(c.reward.params.overlong_buffer, 4);
  const std::string dumped = train::to_yaml(c, false);
  EXPECT_NE(dumped.find("advantage: \"rloo\""), std::string::npos) << dumped;
  auto back = load_config_text(dumped, "dump.yaml", {}, false);
  EXPECT_EQ(back.grpo.advantage.mode, algo::AdvantageMode::kRloo);
  EXPECT_EQ(back.grpo.loss.kl_estimator, algo::KlEstimator::kK2);
  EXPECT_EQ(back.grpo.loss.aggregation, algo::LossAggregation::kSeqMeanTokenSumNorm);
  EXPECT_EQ(train::to_yaml(back, false), dumped);
  auto msg = grpo::test_util::error_of([] { load_config_text("grpo: {kl_estimator: k4}\n", "bad.yaml", {}, false); });
  EXPECT_NE(msg.find("grpo.kl_estimator"), std::string::npos) << msg;
  EXPECT_NE(msg.find("k4"), std::string::npos) << msg;
}

TEST(Config, ErrorsNameTheKeyAndWhatWasFound) {
  auto unknown = error_of("run:\n  seed: 3\ngrpo:\n  group_sise: 4\n");
  EXPECT_NE(unknown.find("test.yaml:4:3"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("grpo.group_sise"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("did you mean 'group_size'"), std::string::npos) << unknown;

  auto type = error_of("optim:\n  lr: fast\n");
  EXPECT_NE(type.find("test.yaml:2:7"), std::string::npos) << type;
  EXPECT_NE(type.find("optim.lr"), std::string::npos) << type;
  EXPECT_NE(type.find("expected a number"), std::string::npos) << type;
  EXPECT_NE(type.find("'fast'"), std::string::npos) << type;

  auto range = error_of("grpo:\n  group_size: 0\n");
  EXPECT_NE(range.find("test.yaml:2:15"), std::string::npos) << range;
  EXPECT_NE(range.find(">= 1"), std::string::npos) << range;

  auto integer = error_of("grpo:\n  group_size: 2.5\n");
  EXPECT_NE(integer.find("expected an integer"), std::string::npos) << integer;

  auto choice = error_of("grpo:\n  loss_aggregation: mean\n");
  EXPECT_NE(choice.find("seq-mean-token-mean"), std::string::npos) << choice;

  auto section = error_of("grpo: 3\n");
  EXPECT_NE(section.find("expected a section"), std::string::npos) << section;

  auto reward = error_of("reward:\n  weights: {accuracy: 1.0, style: 2.0}\n");
  EXPECT_NE(reward.find("test.yaml:2:"), std::string::npos) << reward;
  EXPECT_NE(reward.find("reward.weights.style"), std::string::npos) << reward;

  auto yaml = error_of("grpo:\n  group_size: [1,\n");
  EXPECT_NE(yaml.find("not valid YAML"), std::string::npos) << yaml;

  auto cross = error_of("model:\n  num_attention_heads: 4\n  num_key_value_heads: 3\n");
  EXPECT_NE(cross.find("test.yaml:3:24"), std::string::npos) << cross;
  EXPECT_NE(cross.find("model.num_key_value_heads"), std::string::npos) << cross;
}

TEST(Config, OverrideErrorsNameTheOverride) {
  auto e = error_of("", {"grpo.group_size=many"});
  EXPECT_NE(e.find("--set grpo.group_size=many: grpo.group_size"), std::string::npos) << e;
  auto unknown = error_of("", {"grpo.groupsize=4"});
  EXPECT_NE(unknown.find("--set grpo.groupsize"), std::string::npos) << unknown;
  EXPECT_NE(error_of("", {"noequals"}).find("expected key.path=value"), std::string::npos);
}

// A repeated key would silently lose its later value; a --set that replaces a whole section is
// named for the keys inside it.
TEST(Config, DuplicateKeysAndSectionOverridesAreNamed) {
  auto dup = error_of("grpo:\n  group_size: 4\n  kl_coef: 0.1\n  group_size: 8\n");
  EXPECT_NE(dup.find("test.yaml:4:3: grpo.group_size: the key appears twice (first at line 2)"), std::string::npos)
      << dup;
  auto top = error_of("grpo: {group_size: 4}\noptim: {lr: 1.0e-5}\ngrpo: {kl_coef: 0.1}\n");
  EXPECT_NE(top.find("test.yaml:3:1: grpo: the key appears twice"), std::string::npos) << top;
  auto in_set = error_of("", {"grpo={group_size: 4, group_size: 8}"});
  EXPECT_NE(in_set.find("--set grpo={group_size: 4, group_size: 8}"), std::string::npos) << in_set;
  EXPECT_NE(in_set.find("appears twice"), std::string::npos) << in_set;
  auto section = error_of("grpo:\n  group_size: 4\n", {"grpo={group_size: 0}"});
  EXPECT_NE(section.find("--set grpo={group_size: 0}: grpo.group_size: expected an integer in >= 1"),
            std::string::npos) << section;
  EXPECT_EQ(section.find("test.yaml"), std::string::npos) << section;
}

TEST(Config, FlattenAndDiffListEveryChangedKey) {
  Config a, b;
  b.optim.lr = 2e-6;
  b.reward.weights = {{"accuracy", 3.0}};
  b.run.dir = "elsewhere";
  auto flat = [](Config& c) { return grpo::core::flatten_config([&](grpo::core::ConfigVisitor& v) { c.visit(v); }); };
  auto fa = flat(a);
  EXPECT_EQ(fa.at("grpo.group_size"), std::to_string(a.grpo.group_size));
  EXPECT_EQ(fa.at("run.dir"), "\"runs/demo\"");
  auto changes = grpo::core::diff_config(fa, flat(b));
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_EQ(changes[0].key, "optim.lr");
  EXPECT_EQ(changes[1].key, "reward.weights");
  EXPECT_EQ(changes[2].key, "run.dir");
  EXPECT_EQ(changes[2].after, "\"elsewhere\"");
  EXPECT_TRUE(grpo::core::diff_config(fa, fa).empty());
  EXPECT_TRUE(train::config_change_is_safe("eval.every"));
  EXPECT_TRUE(train::config_change_is_safe("grpo.rollout_steps"));
  EXPECT_TRUE(train::config_change_is_safe("parallel.tp"));
  EXPECT_FALSE(train::config_change_is_safe("run.seed"));
  EXPECT_FALSE(train::config_change_is_safe("grpo.group_size"));
  EXPECT_FALSE(train::config_change_is_safe("reward.weights"));
}

TEST(Config, DumpRoundTrips) {
  Config c;
  c.grpo.group_size = 5;
  c.optim.lr = 3e-6;
  c.reward.weights = {{"accuracy", 2.0}};
  auto back = load_config_text(grpo::train::to_yaml(c), "dump.yaml");
  EXPECT_EQ(back.grpo.group_size, 5);
  EXPECT_DOUBLE_EQ(back.optim.lr, 3e-6);
  EXPECT_EQ(back.reward.weights, c.reward.weights);
  EXPECT_EQ(grpo::train::to_yaml(back), grpo::train::to_yaml(c));
}

TEST(Config, DocsListEveryKeyAsTheCodeDefinesIt) {
  auto reference = grpo::core::describe_config(
      [](grpo::core::ConfigVisitor& v) {
        Config c;
        c.visit(v);
      },
      true);
  auto doc = grpo::core::read_file(std::string(GRPO_SOURCE_DIR) + "/docs/configuration.md");
  EXPECT_NE(doc.find(reference), std::string::npos)
      << "docs/configuration.md is out of date: replace its key tables with the output of "
         "`build/bin/grpo_train --config-reference`";
}

// ---- model.path (a tiny HF model directory, test_util.h) and datasets

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

// Each built-in task's keys apply to it alone, and multiplication's tool demonstrations need the
// code tool in rollouts.
TEST(Config, BuiltInTaskKeysBelongToTheirTask) {
  const std::string mul = "task: {name: multiplication, digits: 4}\nmodel: {max_position_embeddings: 64}\npretrain: {steps: 10}\n"
                          "rollout: {max_new_tokens: 48}\n";
  EXPECT_NO_THROW(train::load_config_text(mul + "env: {name: code}\n", "t.yaml"));
  auto no_env = config_error(mul);
  EXPECT_NE(no_env.find("env.name"), std::string::npos) << no_env;
  EXPECT_NE(no_env.find("expected env.name code"), std::string::npos) << no_env;
  EXPECT_NO_THROW(train::load_config_text(mul, "t.yaml", {"task.tool_rate=0"}));  // no tool: no env needed
  auto noise = error_of(mul + "env: {name: code}\n", {"task.noise=0.2"});
  EXPECT_NE(noise.find("task.noise"), std::string::npos) << noise;
  EXPECT_NE(noise.find("addition only"), std::string::npos) << noise;
  auto tool = config_error("task: {tool_rate: 0.5}\n");
  EXPECT_NE(tool.find("task.tool_rate"), std::string::npos) << tool;
  EXPECT_NE(tool.find("multiplication only"), std::string::npos) << tool;
  auto name = config_error("task: {name: division}\n");
  EXPECT_NE(name.find("task.name"), std::string::npos) << name;
}
