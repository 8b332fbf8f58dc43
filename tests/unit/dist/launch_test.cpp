// Launch environments (torchrun, mpirun, srun): rank, world, local rank and rendezvous, and clear
// errors for inconsistent ones.
#include <map>
#include <optional>
#include <string>

#include <gtest/gtest.h>

#include "grpo/core/error.h"
#include "grpo/dist/launch.h"
#include "../test_util.h"

using grpo::dist::detect_launch;
using grpo::dist::LaunchInfo;
using grpo::test_util::error_of;

namespace {
LaunchInfo launch(const std::map<std::string, std::string>& env) {
  return detect_launch([&](const std::string& k) -> std::optional<std::string> {
    auto it = env.find(k);
    if (it == env.end()) return std::nullopt;
    return it->second;
  });
}
std::string launch_error(const std::map<std::string, std::string>& env) {
  return error_of([&] { launch(env); });
}
}  // namespace

TEST(Launch, NoLauncherIsOneProcess) {
  auto l = launch({});
  EXPECT_EQ(l.launcher, "none");
  EXPECT_EQ(l.world_size, 1);
  EXPECT_EQ(l.rank, 0);
}

TEST(Launch, Torchrun) {
  auto l = launch({{"RANK", "3"}, {"WORLD_SIZE", "8"}, {"LOCAL_RANK", "1"}, {"LOCAL_WORLD_SIZE", "2"},
                   {"MASTER_ADDR", "node7"}, {"MASTER_PORT", "29400"}});
  EXPECT_EQ(l.launcher, "torchrun");
  EXPECT_EQ(l.rank, 3);
  EXPECT_EQ(l.world_size, 8);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.local_world_size, 2);
  EXPECT_EQ(l.master_addr, "node7");
  EXPECT_EQ(l.master_port, 29400);
}

TEST(Launch, MpirunOneNodeAndAcrossNodes) {
  auto l = launch({{"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"},
                   {"OMPI_COMM_WORLD_LOCAL_RANK", "1"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"},
                   {"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}});  // mpirun inside an allocation
  EXPECT_EQ(l.launcher, "mpirun");
  EXPECT_EQ(l.rank, 1);
  EXPECT_EQ(l.master_addr, "127.0.0.1");
  auto e = launch_error({{"OMPI_COMM_WORLD_RANK", "5"}, {"OMPI_COMM_WORLD_SIZE", "16"},
                         {"OMPI_COMM_WORLD_LOCAL_RANK", "5"}, {"OMPI_COMM_WORLD_LOCAL_SIZE", "8"}});
  EXPECT_NE(e.find("-x MASTER_ADDR"), std::string::npos) << e;
}

TEST(Launch, SlurmTakesTheFirstNodeAndAPortPerJob) {
  auto l = launch({{"SLURM_PROCID", "9"}, {"SLURM_NTASKS", "16"}, {"SLURM_LOCALID", "1"},
                   {"SLURM_NTASKS_PER_NODE", "8"}, {"SLURM_STEP_NODELIST", "gpu[07-08]"}, {"SLURM_JOB_ID", "123456"}});
  EXPECT_EQ(l.launcher, "slurm");
  EXPECT_EQ(l.rank, 9);
  EXPECT_EQ(l.local_rank, 1);
  EXPECT_EQ(l.master_addr, "gpu07");
  EXPECT_EQ(l.master_port, 20000 + 123456 % 20000);
  EXPECT_EQ(grpo::dist::first_slurm_host("a1,b[1-3]"), "a1");
  EXPECT_EQ(grpo::dist::first_slurm_host("node[003,005-009]"), "node003");
  auto e = launch_error({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}});
  EXPECT_NE(e.find("SLURM_STEP_NODELIST"), std::string::npos) << e;
}

TEST(Launch, InconsistentEnvironmentsNameTheVariables) {
  auto e = launch_error({{"RANK", "4"}, {"WORLD_SIZE", "4"}});
  EXPECT_NE(e.find("RANK = 4 is not a rank of a world of 4"), std::string::npos) << e;
  e = launch_error({{"RANK", "1"}});
  EXPECT_NE(e.find("RANK and WORLD_SIZE must be set together"), std::string::npos) << e;
  e = launch_error({{"RANK", "one"}, {"WORLD_SIZE", "2"}});
  EXPECT_NE(e.find("environment variable RANK: expected an integer, found 'one'"), std::string::npos) << e;
  e = launch_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"OMPI_COMM_WORLD_RANK", "1"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
  EXPECT_NE(e.find("disagree with OMPI_COMM_WORLD_RANK"), std::string::npos) << e;
  e = launch_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"LOCAL_RANK", "2"}, {"LOCAL_WORLD_SIZE", "2"}});
  EXPECT_NE(e.find("local rank 2 of 2"), std::string::npos) << e;
  e = launch_error({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}});
  EXPECT_NE(e.find("MASTER_PORT 70000"), std::string::npos) << e;
}

// A multi-process run whose prompts cannot be split into whole groups per rank is an error
// naming the key, on the command line as in the library.
TEST(Launch, GrpoTrainNamesAnUnevenSplit) {
  int rc = 0;
  auto out = grpo::test_util::run_command("RANK=0 WORLD_SIZE=3 " + std::string(GRPO_BIN_DIR) +
                                              "/grpo_train --config " + GRPO_SOURCE_DIR + "/configs/demo.yaml",
                                          &rc);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("grpo.prompts_per_step (32) must split evenly over the 3 data-parallel processes"),
            std::string::npos) << out;
}
