// The code tool of multi-turn rollouts (env "code", env/environment.h) against hostile and broken
// programs: whatever the program does becomes an observation the model reads -- output cut to the
// limit, a timeout, a crash's traceback, a forbidden call -- never an exception, and nothing it
// started outlives the turn.
#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include "grpo/data/arithmetic.h"
#include "grpo/env/environment.h"

using namespace grpo;

namespace {

env::Observation run(const std::string& code, double seconds = 2, int64_t max_chars = 200) {
  env::EnvConfig c;
  c.name = "code";
  c.tool_seconds = seconds;
  c.max_output_chars = max_chars;
  auto e = env::make_environment(c);
  e->reset("q", "a");
  return e->step("Let me compute it.\n<code>\n" + code + "\n</code>");
}

}  // namespace

TEST(CodeTool, RunsTheLastBlockAndShowsItsOutput) {
  auto o = run("x = 6 * 7\nprint(x)");
  EXPECT_EQ(o.text, "<output>\n42\n</output>\n");
  EXPECT_TRUE(o.tool_call);
  EXPECT_FALSE(o.tool_error);
  env::EnvConfig c;
  c.name = "code";
  auto e = env::make_environment(c);
  e->reset("q", "a");
  auto two = e->step("<code>print(1)</code> no, better:\n<code>print(2)</code>");
  EXPECT_EQ(two.text, "<output>\n2\n</output>\n");
  auto none = e->step("I will not write code </code>");
  EXPECT_NE(none.text.find("no <code> block"), std::string::npos) << none.text;
  EXPECT_FALSE(none.tool_call);
}

TEST(CodeTool, ACrashIsItsTracebackAndAForbiddenCallIsAnError) {
  auto o = run("def f():\n    return 1 / 0\nf()");
  EXPECT_TRUE(o.tool_error);
  EXPECT_NE(o.text.find("ZeroDivisionError"), std::string::npos) << o.text;
  auto s = run("import socket\nsocket.socket(socket.AF_INET, socket.SOCK_STREAM).connect(('1.1.1.1', 80))\nprint('connected')");
  EXPECT_TRUE(s.tool_error);
  EXPECT_EQ(s.text.find("connected"), std::string::npos) << s.text;
}

TEST(CodeTool, ALoopIsStoppedAtTheLimit) {
  const auto t0 = std::chrono::steady_clock::now();
  auto o = run("while True:\n    pass", 1.0);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_TRUE(o.tool_timeout);
  EXPECT_TRUE(o.tool_error);
  EXPECT_NE(o.text.find("[stopped: the program ran longer than 1 s]"), std::string::npos) << o.text;
  EXPECT_LT(took, 10.0);
}

TEST(CodeTool, AFloodIsCutAndAForkBombIsContained) {
  auto o = run("import sys\nsys.stdout.write('x' * 10000000)", 5, 100);
  EXPECT_NE(o.text.find("[output cut: "), std::string::npos) << o.text.substr(0, 300);
  EXPECT_LT(o.text.size(), 300u);
  auto f = run("import os\nfor _ in range(1000):\n    try:\n        os.fork()\n    except OSError:\n        pass\nprint('done')",
               3, 100);
  EXPECT_LT(f.text.size(), 400u);  // an observation, whatever the forks printed
  EXPECT_TRUE(f.tool_call);
}

// The multiplication task's tool demonstrations (data/arithmetic.h) show the observation the code
// tool really returns, byte for byte: the pretrain stage teaches the transcript rollouts produce.
TEST(CodeTool, MultiplicationDemonstrationsShowWhatTheToolReturns) {
  env::EnvConfig c;
  c.name = "code";
  c.output_open = "<output>";
  c.output_close = "</output>";
  data::ArithmeticConfig t;
  t.name = "multiplication";
  t.digits = 5;
  t.tool_rate = 1;
  data::ArithmeticTask task(t, 1, {c.code_open, c.turn_end, c.output_open, c.output_close});
  for (int i = 0; i < 3; ++i) {
    auto p = task.train_problem(i);
    auto pieces = task.demonstration_pieces(p, uint64_t(i));
    ASSERT_EQ(pieces.size(), 3u);
    auto e = env::make_environment(c);
    e->reset(p.question, p.answer);
    auto o = e->step(pieces[0].text);
    EXPECT_TRUE(o.tool_call);
    EXPECT_FALSE(o.tool_error);
    EXPECT_EQ(o.text, pieces[1].text) << p.question;
  }
}
