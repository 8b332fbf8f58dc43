// Where this process sits in a multi-process job: rank, world size, local rank and the rendezvous
// address, read from the environment that the launcher set -- torchrun (RANK, WORLD_SIZE,
// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), OpenMPI's mpirun
// (OMPI_COMM_WORLD_RANK/SIZE/LOCAL_RANK/LOCAL_SIZE) or Slurm's srun (SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID, SLURM_STEP_NODELIST / SLURM_JOB_NODELIST, SLURM_JOB_ID). No launcher: one process.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace grpo::dist {

struct LaunchInfo {
  std::string launcher = "none";  // none | torchrun | mpirun | slurm
  int64_t rank = 0, world_size = 1;
  int64_t local_rank = 0, local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  std::vector<std::string> variables;  // the environment variables it was read from
};

using Getenv = std::function<std::optional<std::string>(const std::string&)>;

/// Reads the launch environment. Precedence when several launchers' variables are present:
/// torchrun's RANK/WORLD_SIZE (set explicitly), then OpenMPI, then Slurm (mpirun inside a Slurm
/// allocation sees SLURM_* of the batch step too); where two agree on a value they must agree.
/// Throws grpo::Error naming the variables that are missing, malformed or inconsistent.
LaunchInfo detect_launch(const Getenv& getenv);
/// detect_launch on this process's environment.
LaunchInfo detect_launch();

/// The first host of a Slurm node list: "gpu[07-09,12],cpu3" -> "gpu07".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace grpo::dist
