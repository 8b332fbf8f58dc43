// Multi-turn episodes through the rollout engine with a real tokenizer (Qwen3's): token in, token
// out across 3 turns -- the trained ids are the sampled ids verbatim and the observations' ids as
// tokenized once -- in a case where decoding and re-tokenizing the transcript would have given
// other ids; the environment registry; an environment that throws. The code tool against hostile
// programs is tests/sandbox/code_tool_test.cpp.
#include <atomic>
#include <optional>
#include <map>
#include <string>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/env/environment.h"
#include "grpo/env/episodes.h"
#include "grpo/model/transformer.h"
#include "grpo/rollout/generate.h"
#include "grpo/text/chat_template.h"
#include "grpo/text/hf_tokenizer.h"
#include "grpo/text/prompt.h"
#include "grpo/train/micro_batch.h"
#include "../test_util.h"

using namespace grpo;

namespace {

// Answers every turn with what it was told, numbered; the 3rd observation ends the episode.
class Echo : public env::Environment {
 public:
  void reset(const std::string& q, const std::string&) override { question_ = q; }
  env::Observation step(const std::string& turn) override {
    env::Observation o;
    o.text = "<output>\nturn " + std::to_string(++turns_) + " of " + question_ + ": " +
             std::to_string(turn.size()) + " characters\n</output>\n";
    o.done = turns_ == 3;
    o.tool_call = true;
    return o;
  }

 private:
  std::string question_;
  int turns_ = 0;
};

}  // namespace

TEST(Episodes, ThreeTurnsKeepTheSampledAndObservedIdsVerbatim) {
  env::register_environment("echo", [](const env::EnvConfig&) { return std::make_unique<Echo>(); });
  auto tok = text::HfTokenizer::from_dir(test_util::kQwen3Tok);
  model::ModelConfig c;
  c.vocab_size = tok->vocab_size();
  c.hidden_size = 16;
  c.num_hidden_layers = 1;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.intermediate_size = 24;
  c.max_position_embeddings = 256;
  c.initializer_range = 0.5;
  at::manual_seed(3);
  model::Transformer m(c);
  for (auto& p : m.parameters()) p.set_data(p.data().to(at::kDouble));

  env::EnvConfig ec;
  ec.name = "echo";
  std::vector<std::pair<std::string, std::string>> tasks;
  rollout::GenerateRequest req;
  for (int p = 0; p < 2; ++p) {
    req.prompts.push_back(tok->encode("Question " + std::to_string(p) + ": add the numbers."));
    req.prompt_keys.push_back(uint64_t(p));
    for (int g = 0; g < 3; ++g) tasks.emplace_back("question " + std::to_string(p), "");
  }
  req.group_size = 3;
  req.sampling.max_new_tokens = 120;
  req.sampling.temperature = 1.0;
  req.key = {7, 1, 1};
  req.eos_id = -1;
  // a TurnHandler that ends turns every 5 sampled tokens and hands them to the episodes
  struct Handler : rollout::TurnHandler {
    env::Episodes& e;
    std::map<int64_t, int64_t> start;
    explicit Handler(env::Episodes& e) : e(e) {}
    bool ends_turn(int64_t row, const std::vector<int64_t>& r) override { return int64_t(r.size()) - start[row] >= 5; }
    void submit(int64_t row, const std::vector<int64_t>& r) override {
      start[row] = int64_t(r.size());
      e.submit(row, r);
    }
    std::vector<Reply> ready(bool wait) override {
      auto out = e.ready(wait);
      for (auto& x : out) start[x.row] += int64_t(x.ids.size());
      return out;
    }
  };
  env::Episodes episodes(ec, *tok, tasks);
  Handler h(episodes);
  req.turns = &h;
  auto out = rollout::generate(m, req);

  const int64_t P = out.prompt_width;
  int64_t drifted = 0;
  for (int64_t row = 0; row < out.rows(); ++row) {
    const auto& resp = out.responses[size_t(row)];
    // the transcript: 3 turns of 5 sampled tokens, each followed by its observation's ids
    std::vector<int64_t> expect;
    int64_t at = 0;
    for (int turn = 1; turn <= 3; ++turn) {
      const std::vector<int64_t> sampled(resp.begin() + at, resp.begin() + at + 5);
      for (int64_t k = 0; k < 5; ++k) EXPECT_TRUE(out.response_mask[row][at + k].item<bool>());
      expect.insert(expect.end(), sampled.begin(), sampled.end());
      at += 5;
      const auto obs = tok->encode("<output>\nturn " + std::to_string(turn) + " of question " + std::to_string(row / 3) +
                                   ": " + std::to_string(tok->decode(sampled).size()) + " characters\n</output>\n");
      for (size_t k = 0; k < obs.size(); ++k) EXPECT_FALSE(out.response_mask[row][at + int64_t(k)].item<bool>());
      expect.insert(expect.end(), obs.begin(), obs.end());
      at += int64_t(obs.size());
    }
    EXPECT_EQ(resp, expect) << "row " << row;
    EXPECT_EQ(out.finish[size_t(row)], rollout::FinishReason::kStop);
    // the trained ids: the row's tokens after its prompt, exactly the transcript
    auto trained = out.tokens[row].narrow(0, P, int64_t(expect.size())).contiguous();
    EXPECT_EQ(std::vector<int64_t>(trained.data_ptr<int64_t>(), trained.data_ptr<int64_t>() + trained.numel()), expect);
    // what a detokenize / re-tokenize round trip between turns would have trained on instead
    drifted += tok->encode(tok->decode(resp)) != resp;
  }
  EXPECT_GT(drifted, 0) << "no transcript changes when re-tokenized: the test shows nothing";
  // the model conditioned on exactly those ids: teacher forcing gives back the sampling log-probs
  auto s = train::ResponseBatch::of(out);
  auto lp = train::response_logprobs(m, s, at::arange(out.rows(), at::kLong), false).logprobs.to(at::kDouble);
  auto mask = out.response_mask.narrow(1, 0, s.R).to(at::kDouble);
  EXPECT_LT(((lp - out.sampling_logprobs.narrow(1, 0, s.R).to(at::kDouble)) * mask).abs().max().item<double>(), 1e-5);
  const auto st = episodes.stats();
  EXPECT_EQ(st.episodes, 6);
  EXPECT_EQ(st.turns, 18);
  EXPECT_EQ(st.tool_calls, 18);
  EXPECT_GT(st.observation_tokens, 18 * 5);
}

TEST(Episodes, MaxTurnsEndsTheEpisodeAndABrokenEnvironmentIsAnError) {
  env::register_environment("echo_forever", [](const env::EnvConfig&) {
    struct Forever : env::Environment {
      void reset(const std::string&, const std::string&) override {}
      env::Observation step(const std::string&) override { return {"ok", false, true}; }
    };
    return std::make_unique<Forever>();
  });
  auto tok = text::HfTokenizer::from_dir(test_util::kQwen3Tok);
  env::EnvConfig ec;
  ec.name = "echo_forever";
  ec.max_turns = 2;
  env::Episodes e(ec, *tok, {{"q", "a"}});
  const auto ids = tok->encode("x = 1 </code>");
  EXPECT_TRUE(e.ends_turn(0, ids));
  EXPECT_FALSE(e.ends_turn(0, tok->encode("x = 1 </cod")));
  std::vector<int64_t> response;
  for (int turn = 1; turn <= 3; ++turn) {
    response.insert(response.end(), ids.begin(), ids.end());
    EXPECT_TRUE(e.ends_turn(0, response));
    e.submit(0, response);
    auto r = e.ready(true);
    ASSERT_EQ(r.size(), 1u);
    EXPECT_EQ(r[0].truncated, turn == 3) << turn;  // the 3rd turn is over env.max_turns
    EXPECT_EQ(r[0].ids, turn < 3 ? tok->encode("ok") : std::vector<int64_t>{});
    response.insert(response.end(), r[0].ids.begin(), r[0].ids.end());
    EXPECT_FALSE(e.ends_turn(0, response));  // the observation starts the next turn
  }
  EXPECT_EQ(e.stats().truncated, 1);

  env::register_environment("broken", [](const env::EnvConfig&) {
    struct Broken : env::Environment {
      void reset(const std::string&, const std::string&) override {}
      env::Observation step(const std::string&) override { throw std::runtime_error("lost its connection"); }
    };
    return std::make_unique<Broken>();
  });
  ec.name = "broken";
  env::Episodes b(ec, *tok, {{"q", "a"}});
  b.submit(0, ids);
  auto err = test_util::error_of([&] { b.ready(true); });
  EXPECT_NE(err.find("environment 'broken' failed on row 0: lost its connection"), std::string::npos) << err;
  ec.name = "nonesuch";
  err = test_util::error_of([&] { env::make_environment(ec); });
  EXPECT_NE(err.find("env.name: unknown environment 'nonesuch'"), std::string::npos) << err;
  EXPECT_NE(err.find("code"), std::string::npos) << err;
}

// The external environment protocol (env.name external): examples/external_env.py answers over JSON
// lines; an environment process that crashes, hangs or talks nonsense ends the episode with the
// error as its observation, and the next episode gets a fresh process.
TEST(ExternalEnv, TheExampleAnswersAndABrokenProcessEndsOnlyItsEpisodes) {
  env::EnvConfig c;
  c.name = "external";
  c.command = "python3 " + std::string(GRPO_SOURCE_DIR) + "/examples/external_env.py";
  c.workers = 1;
  auto e = env::make_environment(c);
  e->reset("What is 6 times 7?", "42");
  auto o = e->step("Let me compute. <code>6 * 7</code>");
  EXPECT_EQ(o.text, "<output>\n42\n</output>\n");
  EXPECT_FALSE(o.done);
  EXPECT_FALSE(o.tool_error);
  o = e->step("<code>1 / 0</code>");
  EXPECT_TRUE(o.tool_error);
  EXPECT_NE(o.text.find("error: division by zero"), std::string::npos) << o.text;
  EXPECT_TRUE(e->step("<code>2 ** 10</code>").done);  // the example's 3 calls

  const std::string dir = test_util::tmpdir("external_env");
  // crashes on its 2nd message (the first step), then works when started again
  test_util::write_file(dir + "/crash.py", R"(import json, os, sys
marker = sys.argv[1]
for i, line in enumerate(sys.stdin):
    if i == 1 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(3)
    print(json.dumps({"observation": "ok", "done": False}), flush=True)
)");
  c.command = "python3 " + dir + "/crash.py " + dir + "/crashed";
  auto a = env::make_environment(c), b = env::make_environment(c);
  a->reset("q", "a");
  o = a->step("<code>1</code>");
  EXPECT_TRUE(o.done && o.tool_error);
  EXPECT_NE(o.text.find("[environment error: environment 'python3"), std::string::npos) << o.text;
  EXPECT_NE(o.text.find("exited without replying"), std::string::npos) << o.text;
  b->reset("q", "a");  // a fresh process
  o = b->step("<code>1</code>");
  EXPECT_EQ(o.text, "ok");
  EXPECT_FALSE(o.tool_error);

  // hangs: the deadline ends the episode, counted as a timeout
  test_util::write_file(dir + "/hang.py", "import sys, time\nfor line in sys.stdin:\n    time.sleep(60)\n");
  c.command = "python3 " + dir + "/hang.py";
  c.tool_seconds = 0.5;
  auto h = env::make_environment(c);
  h->reset("q", "a");  // its reply never comes either
  o = h->step("<code>1</code>");
  EXPECT_TRUE(o.done && o.tool_error && o.tool_timeout) << o.text;
  EXPECT_NE(o.text.find("no reply before the deadline"), std::string::npos) << o.text;

  // nonsense, a line for each line read
  c.command = "while read -r line; do echo 'not json'; done";
  c.tool_seconds = 5;
  auto n = env::make_environment(c);
  n->reset("q", "a");
  o = n->step("<code>1</code>");
  EXPECT_TRUE(o.done && o.tool_error);
  EXPECT_NE(o.text.find("expected a JSON object, got 'not json'"), std::string::npos) << o.text;
  c.command = "";
  EXPECT_NE(test_util::error_of([&] { env::make_environment(c); }).find("needs env.command"), std::string::npos);
}

// env.observation_role: an observation becomes a chat turn of that role, framed by the model's own
// chat template (Qwen3's: a tool message is a user turn holding <tool_response>), tokenized once.
// The transcript -- prompt, the model's turn, the framed observation -- is then exactly the
// template's rendering of the conversation [user, assistant: turn, tool: observation] with the
// generation prompt, and the episode hands back the ids of that framed observation.
TEST(Episodes, ObservationsTakeTheChatTemplatesTurnMarkers) {
  struct Python : env::Environment {
    void reset(const std::string&, const std::string&) override {}
    env::Observation step(const std::string&) override {
      env::Observation o;
      o.text = "42";
      o.tool_call = true;
      return o;
    }
  };
  env::register_environment("answer_42", [](const env::EnvConfig&) { return std::make_unique<Python>(); });
  auto tok = text::HfTokenizer::from_dir(test_util::kQwen3Tok);
  ASSERT_NE(tok->chat_template(), nullptr);
  for (const char* thinking : {"default", "off"}) {
    text::PromptConfig pc;
    pc.chat = "model";
    pc.system = "You can run Python.";
    pc.thinking = thinking;
    const auto frame = text::observation_frame(pc, "tool", tok.get());
    EXPECT_NE(frame.before.find("<tool_response>"), std::string::npos) << frame.before;
    EXPECT_NE(frame.after.find("</tool_response>"), std::string::npos) << frame.after;
    const std::string question = "What is 6*7?", turn = "<tool_call>\n{\"name\": \"python\", \"arguments\": {\"code\": \"print(6*7)\"}}\n</tool_call>";
    std::optional<bool> th;
    if (std::string(thinking) == "off") th = false;
    const std::string reference = tok->chat_template()->apply(
        {{"system", pc.system}, {"user", question}, {"assistant", turn}, {"tool", "42"}}, true, th);
    const std::string framed = turn + frame.before + "42" + frame.after;
    ASSERT_GE(reference.size(), framed.size());
    EXPECT_EQ(reference.substr(reference.size() - framed.size()), framed);
    if (std::string(thinking) == "default")
      EXPECT_EQ(text::format_prompt(pc, question, tok.get()) + framed, reference);
    // (thinking off: the generation prompt ends with an empty <think></think> block, which Qwen3's
    // template leaves out when it renders the same turn as history. The episode keeps what the
    // model conditioned on -- token in, token out -- so only the frame must match there.)

    env::EnvConfig ec;
    ec.name = "answer_42";
    ec.turn_end = "</tool_call>";
    ec.observation_role = "tool";
    env::Episodes episodes(ec, *tok, {{question, "42"}}, frame);
    const auto sampled = tok->encode(turn);
    EXPECT_TRUE(episodes.ends_turn(0, sampled));
    episodes.submit(0, sampled);
    auto replies = episodes.ready(true);
    ASSERT_EQ(replies.size(), 1u);
    EXPECT_EQ(replies[0].ids, tok->encode(frame.before + "42" + frame.after));
    EXPECT_EQ(tok->decode(replies[0].ids), frame.before + "42" + frame.after);
  }
  // no chat format, or one that cannot render the role, is an error naming the key
  text::PromptConfig none;
  std::string what;
  try {
    text::observation_frame(none, "tool", tok.get());
  } catch (const Error& e) {
    what = e.what();
  }
  EXPECT_NE(what.find("env.observation_role"), std::string::npos) << what;
  text::PromptConfig fast;
  fast.chat = "qwen3";  // the built-in fast path knows system, user and assistant only
  what.clear();
  try {
    text::observation_frame(fast, "tool", tok.get());
  } catch (const Error& e) {
    what = e.what();
  }
  EXPECT_NE(what.find("env.observation_role 'tool'"), std::string::npos) << what;
  const auto user = text::observation_frame(fast, "user", tok.get());  // a user turn it can frame
  EXPECT_EQ(user.before, "<|im_end|>\n<|im_start|>user\n");
  EXPECT_EQ(user.after, "<|im_end|>\n<|im_start|>assistant\n");
}
