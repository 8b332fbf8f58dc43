// Multi-turn rollouts: environments the policy acts in (a code tool, a user's process), and the
// bridge the rollout engine drives them through.
//
// An episode is one sampled response: the model writes a turn; when the turn ends with the
// environment's turn marker (e.g. "</code>"), the environment steps on that turn's text and its
// observation (e.g. "<output>...</output>") is tokenized once and appended to the sequence as ids,
// after which the model continues. Token in, token out: the ids the model sampled are kept
// verbatim and the observation's ids are the ones the model conditions on, so the trained sequence
// is exactly the one sampled (no detokenize/re-tokenize between turns). Observation tokens carry
// no loss and no sampling log-prob (RolloutBatch::response_mask is false on them).
//
// While its environment works, a sequence leaves the running batch (other sequences keep
// decoding) and keeps its KV cache; under memory pressure the cache is dropped and recomputed.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "grpo/core/config.h"

namespace grpo::env {

/// What an environment returns for a turn.
struct Observation {
  std::string text;        // appended after the model's turn (tokenized once, at insertion)
  bool done = false;       // the episode ends here (nothing is appended after `text`)
  bool tool_call = false;  // the turn called a tool (metrics)
  bool tool_error = false; // the tool failed: a crash, a forbidden call, a non-zero exit (metrics)
  bool tool_timeout = false;
  double seconds = 0;      // time spent in the environment
};

/// One episode of an environment. reset() starts it for a task; step() takes the text of the
/// model's latest turn (ending with the turn marker) and returns what the model sees next. A
/// timeout, crash or forbidden syscall in a tool is an observation, never an exception; an
/// exception means the environment itself is broken.
class Environment {
 public:
  virtual ~Environment() = default;
  virtual void reset(const std::string& question, const std::string& answer) = 0;
  virtual Observation step(const std::string& turn) = 0;
};

/// The `env` config section.
struct EnvConfig {
  std::string name;                 // "" = single-turn rollouts; "code" = the built-in Python tool
  std::string turn_end = "</code>";  // a turn ends when the response ends with this text
  std::string code_open = "<code>";  // the code tool runs the text between the last code_open and turn_end
  std::string output_open = "<output>\n", output_close = "\n</output>\n";  // around the tool's output
  int64_t max_turns = 4;            // tool calls per episode; the next one gets a "no more tool calls" note
  int64_t max_output_chars = 1024;  // of stdout + stderr shown to the model (the rest is cut, and says so)
  double tool_seconds = 5;          // wall-clock limit of one tool run (external: of one reply)
  int64_t workers = 2;              // tool runs at once (external: processes)
  std::string command;              // external: the environment process (`sh -c COMMAND`)
  std::string observation_role;     // "" = observations appended as they are; else a chat turn of this role

  void visit(core::ConfigVisitor& v) {
    v.field("name", name, "the environment of multi-turn rollouts: empty = single-turn; code = run the model's "
            "code blocks as Python in the sandbox and show it their output (or a C++ environment registered with "
            "env::register_environment)");
    v.field("turn_end", turn_end, "a turn ends when the response ends with this text; the environment then "
            "steps on the turn and its observation is appended (tokenized once) before the model goes on");
    v.field("code_open", code_open, "code: the program is the text between the turn's last code_open and turn_end");
    v.field("output_open", output_open, "code: text before the program's output");
    v.field("output_close", output_close, "code: text after the program's output");
    v.field("max_turns", max_turns, "turns (tool calls) per episode; one more ends the episode as truncated",
            core::at_least(1));
    v.field("max_output_chars", max_output_chars, "code: characters of stdout + stderr shown (the rest is cut, "
            "and the observation says how much)", core::at_least(1));
    v.field("tool_seconds", tool_seconds, "code: wall-clock limit of one run (a longer run is stopped and the "
            "model is told)", core::positive());
    v.field("workers", workers, "environment steps at once (threads), beside decoding; external: that many "
            "processes, each episode staying on one", core::at_least(1));
    v.field("command", command, "external: the environment process, `sh -c COMMAND`, spoken to in JSON lines "
            "(examples/external_env.py shows the protocol); replies later than tool_seconds, malformed ones "
            "and crashes end the episode with an error the model sees, and the process is restarted");
    v.field("observation_role", observation_role, "empty = an observation is appended as the environment wrote "
            "it (e.g. <output>...</output> inside the model's turn); a role (tool, user) = it becomes a chat turn "
            "of that role, framed by the chat template's own turn markers (prompt.chat), after which the "
            "assistant's turn opens again: the model's turn ends at env.turn_end, e.g. </tool_call>");
  }
};

using EnvironmentFactory = std::function<std::unique_ptr<Environment>(const EnvConfig&)>;
/// Makes `name` known to make_environment() (a library user's environment, written in C++);
/// registering a name twice replaces it. Built in: "code" and "external" (a process of the user's,
/// env.command, over JSON lines:
///   {"type": "reset", "episode": N, "question": ..., "answer": ...}  ->  any JSON object
///   {"type": "step", "episode": N, "turn": ...}  ->  {"observation": text, "done": bool,
///                                                    "tool_call": bool, "tool_error": bool}
/// each episode's messages going to the same process, one at a time).
void register_environment(const std::string& name, EnvironmentFactory factory);
/// Builds a fresh episode of the environment `config.name`; errors name `env.name` and list the
/// known ones.
std::unique_ptr<Environment> make_environment(const EnvConfig& config);
/// Names make_environment() knows, sorted.
std::vector<std::string> environment_names();

}  // namespace grpo::env
