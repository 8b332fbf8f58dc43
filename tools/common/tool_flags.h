// The command-line flags of every grpo tool, in one table (the mechanism is tools/common/flags.h).
// Each flag is declared once, tagged with the tools that accept it; its default is read from
// `d`, the params the tool starts from, so --help shows what the tool really uses. A flag name
// with different meanings in different tools (--tokenizer, --template, --out, -k) is one entry
// per meaning. Tools: `ToolParams p; if (auto rc = parse_tool_flags(kTool, ..., p)) return *rc;`.
// Every tool includes the option structs of all (memory_plan.h, hf_checkpoint.h, reward.h,
// completions.h): headers without torch/torch.h, a small price for one table.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/ranges.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "flags.h"
#include "policy_flags.h"
#include "grpo/model/hf_checkpoint.h"
#include "grpo/reward/reward.h"
#include "grpo/train/memory_plan.h"
#include "grpo/train/completions.h"

namespace grpo::tools {

/// A training config and its overrides (grpo_train, grpo_plan).
struct ConfigFlags {
  std::string path;
  std::vector<std::string> overrides;  // key=value, in command-line order (--resume, --fresh too)
};
struct TrainFlags {
  bool print_config = false, config_reference = false;
  bool quiet = false;            // warnings and errors only, no progress line
  std::string log_level = "info";
};
struct PlanFlags {
  train::PlanOptions options;  // precision, zero1, ... come from the config unless the what-ifs below are set
  std::optional<std::string> precision;
  std::optional<int64_t> max_running;
  bool zero1 = false, recompute = false, sequence_parallel = false, all = false;
  static constexpr size_t kShown = 12;  // layouts listed without --all
};
struct GenerateFlags {
  std::vector<std::string> prompts;
  bool ids = false;
  int64_t eos_id = -2;  // -2: the tokenizer's, or generation_config.json's
  int64_t num_samples = 1;
};
struct EvalFlags {
  train::BenchmarkOptions options;
  std::string per_question;
};
struct SampleFlags {
  train::RejectionOptions options;
  bool keep_given = false;  // the first --keep replaces the default rewards
  std::string out;
  static constexpr double kKeepMin = 1.0;  // --keep NAME without =MIN
};
struct ExportFlags {
  std::string from, out, expected_logits;
  model::HfExportOptions options;
};
struct RewardFlags {
  std::map<std::string, double> weights;
  double failure_value = 0.0;
  reward::RewardParams params;
  std::string plugin;  // command of the reward registered as "plugin"
  static constexpr double kWeight = 1.0;  // --reward NAME without =WEIGHT
};
struct TokenizeFlags {
  std::string tokenizer, template_name;
  bool decode = false, skip_special = false;
};

/// Everything a tool's flags set (each tool reads its part).
struct ToolParams {
  bool help = false;
  ConfigFlags config;
  TrainFlags train;
  PlanFlags plan;
  PolicyFlags policy;  // grpo_generate, grpo_eval, grpo_sample
  GenerateFlags generate;
  EvalFlags eval;
  SampleFlags sample;
  ExportFlags export_;
  RewardFlags reward;
  TokenizeFlags tokenize;
};

/// The table; defaults shown in --help are `d`'s.
/// Samples per prompt a tool takes (-n, -k): far beyond any pass@k or data-generation use, and
/// small enough that sizing the work by it cannot exhaust memory.
inline constexpr int64_t kMaxSamples = 65536;

inline FlagTable<ToolParams> tool_flags(const ToolParams& d) {
  using P = ToolParams;
  using S = const std::string&;
  constexpr Tool kTrain = Tool::kTrain, kPlan = Tool::kPlan, kGenerate = Tool::kGenerate, kEval = Tool::kEval,
                 kSample = Tool::kSample, kExport = Tool::kExport, kReward = Tool::kReward,
                 kTokenize = Tool::kTokenize;
  constexpr Tool kPolicy = kGenerate | kEval | kSample;
  FlagTable<P> t;

  // ---- a training config: grpo_train, grpo_plan
  t.add(kTrain | kPlan, {"--config"}, "FILE", "YAML config (see configs/ and docs/configuration.md)",
        [](P& p, S v) { p.config.path = v; });
  t.add(kTrain | kPlan, {"--set"}, "KEY=VALUE", "override one key, e.g. --set grpo.group_size=16 (repeatable)",
        [](P& p, S v) { p.config.overrides.push_back(v); });

  // ---- grpo_train
  t.add(kTrain, {"--resume"}, "continue from the run directory's latest checkpoint (run.resume=auto)",
        [](P& p) { p.config.overrides.push_back("run.resume=auto"); });
  t.add(kTrain, {"--allow-config-change"}, "resume although the config differs from the checkpoint's "
        "(each change is logged and kept in config_changes.jsonl; run.allow_config_change=true)",
        [](P& p) { p.config.overrides.push_back("run.allow_config_change=true"); });
  t.add(kTrain, {"--fresh"}, "ignore existing checkpoints and start over (run.resume=never)",
        [](P& p) { p.config.overrides.push_back("run.resume=never"); });
  t.add(kTrain, {"--profile"}, "time each stage of the GRPO steps against its least FLOPs and bytes and the "
        "machine's measured peaks; the table ends the run and lands in profile.json (run.profile=true)",
        [](P& p) { p.config.overrides.push_back("run.profile=true"); });
  t.add(kTrain, {"-q", "--quiet"}, "print warnings and errors only (no progress line, no per-step lines)",
        [](P& p) { p.train.quiet = true; });
  t.add(kTrain, {"--log-level"}, "LEVEL", "trace | debug | info | warn | error | off (default: info)",
        [](P& p, S v) {
          if (v != "trace" && v != "debug" && v != "info" && v != "warn" && v != "error" && v != "off")
            fail("--log-level: expected trace, debug, info, warn, error or off, found '{}'", v);
          p.train.log_level = v;
        });
  t.add(kTrain, {"--print-config"}, "print the resolved config and exit",
        [](P& p) { p.train.print_config = true; });
  t.add(kTrain, {"--config-reference"}, "print every key as Markdown tables (docs/configuration.md) and exit",
        [](P& p) { p.train.config_reference = true; })
      .stop();

  // ---- grpo_plan (what-ifs over the config's settings)
  const auto& po = d.plan.options;
  t.add(kPlan, {"--gpus"}, "N", "GPUs to plan for", [](P& p, int64_t v) { p.plan.options.gpus = v; }).def(po.gpus);
  t.add(kPlan, {"--tp"}, "T", "tensor-parallel size; 0 = every valid value",
        [](P& p, int64_t v) { p.plan.options.tp = v; })
      .def(po.tp);
  t.add(kPlan, {"--ep"}, "E", "expert-parallel size; 0 = every valid value",
        [](P& p, int64_t v) { p.plan.options.ep = v; })
      .def(po.ep);
  t.add(kPlan, {"--memory-gib"}, "G", "memory of one GPU (GiB)",
        [](P& p, double v) { p.plan.options.gpu_memory_gib = v; })
      .def(po.gpu_memory_gib);
  t.add(kPlan, {"--precision"}, "fp32|bf16", "weights and gradients (bf16: with fp32 master weights)",
        [](P& p, S v) { p.plan.precision = v; })
      .def("the config's optim.precision");
  t.add(kPlan, {"--zero1"}, "AdamW state split over data-parallel ranks (default: the config's parallel.zero1)",
        [](P& p) { p.plan.zero1 = true; });
  t.add(kPlan, {"--recompute"}, "activation recomputation (default: the config's parallel.recompute)",
        [](P& p) { p.plan.recompute = true; });
  t.add(kPlan, {"--sequence-parallel"},
        "Megatron sequence parallel (default: the config's parallel.sequence_parallel)",
        [](P& p) { p.plan.sequence_parallel = true; });
  t.add(kPlan, {"--prompt-tokens"}, "N", "prompt length assumed for the KV cache and activations",
        [](P& p, int64_t v) { p.plan.options.prompt_tokens = v; })
      .def(po.prompt_tokens);
  t.add(kPlan, {"--max-running"}, "N", "sequences decoding at once per GPU (rollout.max_running); 0 = the rank's whole share",
        [](P& p, int64_t v) { p.plan.max_running = v; })
      .def("the config's rollout.max_running");
  t.add(kPlan, {"--gpus-per-node"}, "N", "tp stays inside a node (NVLink); 0 = no limit",
        [](P& p, int64_t v) { p.plan.options.gpus_per_node = v; })
      .def(po.gpus_per_node);
  t.add(kPlan, {"--nvlink-gbs"}, "GB/s", "per-GPU NVLink bandwidth (tp traffic)",
        [](P& p, double v) { p.plan.options.nvlink_gbs = v; })
      .def(po.nvlink_gbs);
  t.add(kPlan, {"--network-gbs"}, "GB/s", "per-GPU network bandwidth (dp and ep traffic)",
        [](P& p, double v) { p.plan.options.network_gbs = v; })
      .def(po.network_gbs);
  t.add(kPlan, {"--all"}, fmt::format("list every layout (default: the first {})", PlanFlags::kShown),
        [](P& p) { p.plan.all = true; });

  // ---- grpo_generate
  t.add(kGenerate, {"--prompt"}, "TEXT", "a question (repeatable)",
        [](P& p, S v) { p.generate.prompts.push_back(v); });
  t.add(kGenerate, {"--ids"},
        "--prompt values are JSON arrays of token ids, used as they are (no template or tokenizer; "
        "--eos-id or generation_config.json)",
        [](P& p) { p.generate.ids = true; });
  t.add(kGenerate, {"--eos-id"}, "N", "the EOS token id; -1 = never stop early",
        [](P& p, int64_t v) { p.generate.eos_id = v; })
      .def("the tokenizer's; with --ids, generation_config.json's");
  t.add(kGenerate, {"-n", "--num-samples"}, "G", "completions per prompt",
        [](P& p, int64_t v) { p.generate.num_samples = v; })
      .def(d.generate.num_samples)
      .range(1, kMaxSamples);

  // ---- grpo_eval
  t.add(kEval, {"-k"}, "N", "samples per question", [](P& p, int64_t v) { p.eval.options.k = v; })
      .def(d.eval.options.k)
      .range(1, kMaxSamples);
  t.add(kEval, {"--no-greedy"}, "skip the greedy pass", [](P& p) { p.eval.options.greedy = false; });
  t.add(kEval, {"--per-question"}, "FILE", "also write one JSON line per question (question, answer, pass)",
        [](P& p, S v) { p.eval.per_question = v; });

  // ---- grpo_sample
  t.add(kSample, {"-k"}, "N", "samples per question", [](P& p, int64_t v) { p.sample.options.k = v; })
      .def(d.sample.options.k)
      .range(1, kMaxSamples);
  {
    std::string keep;  // the default rewards, as the flags that would give them
    for (const auto& [name, min] : d.sample.options.rewards)
      keep += fmt::format("{}--keep {}={}", keep.empty() ? "" : " ", name, min);
    t.add(kSample, {"--keep"}, "NAME[=MIN]",
          fmt::format("keep completions whose reward NAME is at least MIN ({} if not given); repeatable: "
                      "every one must pass", SampleFlags::kKeepMin),
          [](P& p, S v) {
            auto& ro = p.sample.options;
            if (!p.sample.keep_given) ro.rewards.clear();
            p.sample.keep_given = true;
            const auto eq = v.find('=');
            double min = SampleFlags::kKeepMin;
            if (eq != std::string::npos) {
              try {
                size_t used = 0;
                min = std::stod(v.substr(eq + 1), &used);
                GRPO_CHECK(used == v.size() - eq - 1, "");
              } catch (const std::exception&) {
                fail("--keep {}: expected NAME or NAME=MIN with a number, found '{}'", v, v.substr(eq + 1));
              }
            }
            const std::string name = v.substr(0, eq);
            auto known = reward::RewardRegistry::names();
            GRPO_CHECK(std::find(known.begin(), known.end(), name) != known.end(),
                       "--keep: unknown reward '{}'; registered: {}", name, fmt::join(known, ", "));
            ro.rewards[name] = min;
          })
        .def(keep);
  }
  t.add(kSample, {"--max-per-question"}, "N", "distinct kept completions per question; 0 = all",
        [](P& p, int64_t v) { p.sample.options.max_per_question = v; })
      .def(d.sample.options.max_per_question);
  t.add(kSample, {"--keep-truncated"}, "also keep completions cut at max_new_tokens",
        [](P& p) { p.sample.options.drop_truncated = false; });
  t.add(kSample, {"--out"}, "FILE", "output JSONL (required)", [](P& p, S v) { p.sample.out = v; });

  // ---- the policy a tool samples from: grpo_generate, grpo_eval, grpo_sample
  const text::PromptConfig pc;  // what any prompt flag starts from (and a Hugging Face directory's format)
  t.section("model and prompt format (without prompt flags, a checkpoint uses its run's; otherwise the "
            "defaults shown)");
  t.add(kPolicy, {"--model"}, "DIR", "grpo checkpoint or Hugging Face model directory (required)",
        [](P& p, S v) { p.policy.source.model_dir = v; });
  t.add(kPolicy, {"--tokenizer"}, "DIR", "tokenizer directory", [](P& p, S v) { p.policy.source.tokenizer_dir = v; })
      .def("the model's, or the checkpoint run's");
  t.add(kPolicy, {"--eos-token"}, "TEXT", "token that ends a completion",
        [](P& p, S v) { p.policy.source.eos_token = v; })
      .def("tokenizer_config.json's, or the checkpoint run's");
  t.add(kPolicy, {"--template"}, "T", "r1_zero | plain | a string containing {prompt}",
        [](P& p, S v) { p.policy.prompt("template", "--template").template_text = v; })
      .def(pc.template_text);
  t.add(kPolicy, {"--chat"}, "F", "none | model (the model's own Jinja template) | deepseek_v3 | qwen3",
        [](P& p, S v) { p.policy.prompt("chat", "--chat").chat = v; })
      .def(pc.chat);
  t.add(kPolicy, {"--system"}, "TEXT", "system message (chat formats only)",
        [](P& p, S v) { p.policy.prompt("system", "--system").system = v; });
  t.add(kPolicy, {"--thinking"}, "on|off", "qwen3 chat only: off adds the empty <think></think> block",
        [](P& p, S v) { p.policy.prompt("thinking", "--thinking").thinking = v; });
  t.add(kPolicy, {"--add-bos"}, "prepend the tokenizer's BOS token",
        [](P& p) { p.policy.prompt("add_bos", "--add-bos").add_bos = true; });

  t.section("sampling (default: the checkpoint run's rollout settings, else greedy and 256 new tokens)");
  t.add(kPolicy, {"--temperature"}, "T", "0 = greedy", [](P& p, double v) { p.policy.temperature = v; });
  t.add(kPolicy, {"--top-p"}, "P", "nucleus sampling mass", [](P& p, double v) { p.policy.top_p = v; });
  t.add(kPolicy, {"--top-k"}, "K", "keep only the k most likely tokens; 0 = no limit",
        [](P& p, int64_t v) { p.policy.top_k = v; });
  t.add(kPolicy, {"--max-new-tokens"}, "N", "completion length limit (tokens, EOS included)",
        [](P& p, int64_t v) { p.policy.max_new_tokens = v; });
  t.add(kPolicy, {"--seed"}, "S", "sampling seed", [](P& p, int64_t v) { p.policy.seed = v; }).def(d.policy.seed);
  t.add(kPolicy, {"--batch-size"}, "N", "questions generated at once",
        [](P& p, int64_t v) { p.policy.batch_size = v; })
      .def(d.policy.batch_size);
  t.add(kPolicy, {"--threads"}, "N", "CPU threads; 0 = all cores", [](P& p, int64_t v) { p.policy.threads = v; })
      .def(d.policy.threads);

  const auto& q = d.policy.questions;
  t.section("questions");
  t.add(kPolicy, {"--jsonl"}, "FILE", "questions, one JSON object per line",
        [](P& p, S v) { p.policy.questions.path = v; });
  t.add(kPolicy, {"--prompt-field"}, "KEY", "field of the question; dots reach nested keys",
        [](P& p, S v) { p.policy.questions.prompt_field = v; })
      .def(q.prompt_field);
  t.add(kPolicy, {"--answer-field"}, "KEY", "field of the ground truth",
        [](P& p, S v) { p.policy.questions.answer_field = v; })
      .def(q.answer_field);
  t.add(kPolicy, {"--answer-after"}, "TEXT", "the answer is the text after its last occurrence (GSM8K: ####)",
        [](P& p, S v) { p.policy.questions.answer_after = v; });
  t.add(kPolicy, {"--limit"}, "N", "at most N questions; < 0 = all of --jsonl, or a built-in task's own count",
        [](P& p, int64_t v) { p.policy.limit = v; })
      .def(d.policy.limit);
  t.section("");

  // ---- grpo_export
  t.add(kExport, {"--from"}, "DIR", "grpo checkpoint (checkpoints/step-N), Hugging Face directory or GGUF file "
        "(required)",
        [](P& p, S v) { p.export_.from = v; });
  t.add(kExport, {"--out"}, "DIR", "the Hugging Face directory to write (required)",
        [](P& p, S v) { p.export_.out = v; });
  t.add(kExport, {"--dtype"}, "T", "float32 | bfloat16 | float16", [](P& p, S v) { p.export_.options.dtype = v; })
      .def(d.export_.options.dtype);
  t.add(kExport, {"--max-shard-bytes"}, "N", "larger models are split into shards + an index",
        [](P& p, uint64_t v) { p.export_.options.max_shard_bytes = v; })
      .def(d.export_.options.max_shard_bytes);
  t.add(kExport, {"--tokenizer"}, "DIR", "copy the tokenizer files from here",
        [](P& p, S v) { p.export_.options.tokenizer_dir = v; })
      .def("the tokenizer the run trained with, or the source's");
  t.add(kExport, {"--expected-logits"}, "DIR", "also write DIR/expected.safetensors: grpo's fp32 logits of the "
        "exported model on fixed token ids (input_ids [2, 16], logits), for tools/check_hf_export.py to compare "
        "with transformers' on the exported directory",
        [](P& p, S v) { p.export_.expected_logits = v; });

  // ---- grpo_reward
  t.add(kReward, {"--reward"}, "NAME[=WEIGHT][,NAME[=WEIGHT]...]",
        fmt::format("reward functions and their weights (WEIGHT default {}; required; repeatable)",
                    RewardFlags::kWeight),
        [](P& p, S v) {
          std::stringstream ss(v);
          for (std::string item; std::getline(ss, item, ',');) {
            if (item.empty()) continue;
            const auto eq = item.find('=');  // name=weight
            p.reward.weights[item.substr(0, eq)] =
                eq == std::string::npos ? RewardFlags::kWeight
                                        : parse_number<double>("--reward " + item, item.substr(eq + 1));
          }
        });
  t.add(kReward, {"--failure-value"}, "X", "score of a reward function that throws or returns NaN",
        [](P& p, double v) { p.reward.failure_value = v; })
      .def(d.reward.failure_value);
  t.add(kReward, {"--language"}, "auto|SCRIPT|CODE",
        "language reward: target script or language code; auto = the prompt's script",
        [](P& p, S v) { p.reward.params.language = v; })
      .def(d.reward.params.language);
  t.add(kReward, {"--overlong-buffer"}, "TOKENS",
        "overlong reward: the penalty ramps from 0 to -1 over the last TOKENS before the limit",
        [](P& p, int64_t v) { p.reward.params.overlong_buffer = v; })
      .def(d.reward.params.overlong_buffer);
  t.add(kReward, {"--plugin"}, "COMMAND", "an external reward process, registered as the reward named plugin",
        [](P& p, S v) { p.reward.plugin = v; });

  // ---- grpo_tokenize
  t.add(kTokenize, {"--tokenizer"}, "DIR_OR_TOKENIZER_JSON", "tokenizer directory or tokenizer.json (required)",
        [](P& p, S v) { p.tokenize.tokenizer = v; });
  t.add(kTokenize, {"--decode"}, "read JSON arrays of ids, print JSON strings",
        [](P& p) { p.tokenize.decode = true; });
  t.add(kTokenize, {"--skip-special"}, "with --decode: leave special tokens out",
        [](P& p) { p.tokenize.skip_special = true; });
  t.add(kTokenize, {"--template"}, "T",
        "format each string first: r1_zero | model (the directory's Jinja chat template) | deepseek_v3 | "
        "qwen3 (or chatml) | a string containing "
        "{prompt}; a chat format wraps it as one user turn plus the generation prompt",
        [](P& p, S v) { p.tokenize.template_name = v; });

  // ---- every tool
  t.add(Tool::kAll, {"--debug"}, "on an error from LibTorch, also print its C++ stack (as GRPO_DEBUG=1 does)",
        [](P&) { ::setenv("GRPO_DEBUG", "1", 1); });
  t.add(Tool::kAll, {"-h", "--help"}, "print this help and exit", [](P& p) { p.help = true; }).stop();
  return t;
}

/// A tool's program name and the text its --help prints above the flags.
struct ToolInfo {
  const char* name;
  const char* about;
};
inline ToolInfo tool_info(Tool tool) {
  switch (tool) {
    case Tool::kTrain:
      return {"grpo_train",
              "usage: grpo_train --config FILE.yaml [--set key.path=value ...] [--resume [--allow-config-change]] [--fresh]\n"
              "\n"
              "Trains a policy with GRPO: pretrain stage (if configured), then rollout -> rewards ->\n"
              "group-relative advantages -> clipped policy updates. Writes config.yaml, metrics.jsonl,\n"
              "eval.jsonl and checkpoints/ into run.dir.\n"
              "\n"};
    case Tool::kGenerate:
      return {"grpo_generate",
              "usage: grpo_generate --model DIR (--prompt TEXT ... | --jsonl FILE) [options]\n"
              "\n"
              "Samples completions and prints one JSON object per prompt on stdout:\n"
              "  {\"index\", \"prompt\" (the formatted prompt text), \"completions\": [{\"text\",\n"
              "   \"token_ids\", \"finish\": \"stop\"|\"length\"}, ...]}\n"
              "\n"};
    case Tool::kEval:
      return {"grpo_eval",
              "usage: grpo_eval --model DIR [--jsonl BENCH.jsonl] [options]\n"
              "\n"
              "Samples k completions per question and prints one JSON object:\n"
              "  {\"model\", \"benchmark\", \"questions\", \"k\", \"temperature\", \"top_p\", \"max_new_tokens\",\n"
              "   \"pass@1\", \"cons@k\", \"greedy\", \"format_rate\", \"truncation_rate\"}\n"
              "Without --jsonl, a built-in-task checkpoint is evaluated on the task's held-out set.\n"
              "Correctness is the accuracy reward (math answer verification).\n"
              "\n"};
    case Tool::kSample:
      return {"grpo_sample",
              "usage: grpo_sample --model DIR [--jsonl QUESTIONS.jsonl] --out SFT.jsonl [options]\n"
              "\n"
              "Writes one JSON line per kept completion: {\"prompt\" (the formatted prompt), \"response\",\n"
              "\"question\", \"answer\", \"scores\"}; prints a summary line. Without --jsonl, a built-in-task\n"
              "checkpoint samples its task's training questions (--limit of them, default 1000).\n"
              "\n"};
    case Tool::kExport:
      return {"grpo_export",
              "usage: grpo_export --from CHECKPOINT_OR_HF_DIR --out DIR [options]\n"
              "Writes a Hugging Face model directory (config.json, model*.safetensors, index,\n"
              "generation_config.json; tokenizer files copied from --tokenizer or the source).\n"
              "\n"};
    case Tool::kPlan:
      return {"grpo_plan",
              "usage: grpo_plan --config FILE --gpus N [options]\n"
              "Per-GPU memory (weights, gradients, optimizer, activations, KV cache) and bytes sent\n"
              "per rollout step for every dp x tp (experts over ep) layout: those that fit first,\n"
              "least communication time first.\n"
              "The config's optim.precision, parallel.zero1, parallel.recompute,\n"
              "parallel.sequence_parallel, rollout.max_running and rollout.kv_cache_bytes are planned; --precision, --zero1,\n"
              "--recompute, --sequence-parallel and --max-running override them (what-ifs).\n"
              "\n"};
    case Tool::kReward:
      return {"grpo_reward",
              "usage: grpo_reward --reward NAME[=WEIGHT][,NAME[=WEIGHT]...] [options]\n"
              "stdin:  JSON lines {\"completion\": ..., \"answer\": ..., \"prompt\"?, \"response_tokens\"?,\n"
              "        \"max_response_tokens\"?, other fields}\n"
              "stdout: JSON lines {\"score\", \"components\": {name: score}}, in input order\n"
              "\n"};
    case Tool::kTokenize:
      return {"grpo_tokenize",
              "usage: grpo_tokenize --tokenizer DIR_OR_TOKENIZER_JSON [--decode [--skip-special]] [--template T]\n"
              "stdin: one JSON string per line (or, with --decode, one JSON array of ids)\n"
              "stdout: one JSON array of ids per line (or, with --decode, one JSON string)\n"
              "\n"};
    default:
      return {"grpo", ""};
  }
}

/// The start of every tool's main: parses argv for `tool` into `p`. A bad flag prints
/// "<name>: <what is wrong>" and gives exit status 2; -h/--help prints the usage (the tool's
/// about text, the table's flags, then `more_help`) and gives 0; otherwise nullopt: carry on.
inline std::optional<int> parse_tool_flags(Tool tool, int argc, char** argv, ToolParams& p,
                                           const std::function<void(std::ostream&)>& more_help = {}) {
  const auto table = tool_flags(p);
  const auto info = tool_info(tool);
  // stdout is the tools' data (JSON lines, ids); their log lines go to stderr (grpo_train logs on stdout)
  // (a logger outside spdlog's registry: a second parse in one process must not clash on the name)
  if (tool != Tool::kTrain)
    spdlog::set_default_logger(
        std::make_shared<spdlog::logger>(info.name, std::make_shared<spdlog::sinks::stderr_color_sink_mt>()));
  try {
    table.parse(tool, argc, argv, p);
  } catch (const Error& e) {
    std::cerr << info.name << ": " << e.what() << "\n";
    return 2;
  }
  if (!p.help) return std::nullopt;
  table.usage(std::cout, tool, info.about);
  if (more_help) more_help(std::cout);
  return 0;
}

}  // namespace grpo::tools
