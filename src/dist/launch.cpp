#include "grpo/dist/launch.h"

#include <cstdlib>

#include "grpo/core/error.h"

namespace grpo::dist {
namespace {

int64_t parse_int(const std::string& name, const std::string& v) {
  try {
    size_t used = 0;
    const long long x = std::stoll(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  fail("environment variable {}: expected an integer, found '{}'", name, v);
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // "prefix[a-b,c],other" -> "prefix" + a (keeping a's zero padding)
  const auto comma = nodelist.find(',');
  const auto bracket = nodelist.find('[');
  if (bracket == std::string::npos || (comma != std::string::npos && comma < bracket))
    return nodelist.substr(0, comma);
  const auto end = nodelist.find_first_of("-,]", bracket + 1);
  GRPO_CHECK(end != std::string::npos, "Slurm node list '{}': unbalanced '['", nodelist);
  return nodelist.substr(0, bracket) + nodelist.substr(bracket + 1, end - bracket - 1);
}

LaunchInfo detect_launch(const Getenv& getenv) {
  auto get_int = [&](const std::string& name) -> std::optional<int64_t> {
    auto v = getenv(name);
    if (!v || v->empty()) return std::nullopt;
    return parse_int(name, *v);
  };
  LaunchInfo info;
  const auto t_rank = get_int("RANK"), t_world = get_int("WORLD_SIZE");
  const auto o_rank = get_int("OMPI_COMM_WORLD_RANK"), o_world = get_int("OMPI_COMM_WORLD_SIZE");
  const auto s_rank = get_int("SLURM_PROCID"), s_world = get_int("SLURM_NTASKS");
  GRPO_CHECK(t_rank.has_value() == t_world.has_value(),
             "RANK and WORLD_SIZE must be set together (torchrun sets both); found only {}",
             t_rank ? "RANK" : "WORLD_SIZE");
  if (t_rank) {
    info.launcher = "torchrun";
    info.rank = *t_rank;
    info.world_size = *t_world;
    info.local_rank = get_int("LOCAL_RANK").value_or(info.rank);
    info.local_world_size = get_int("LOCAL_WORLD_SIZE").value_or(info.world_size);
    info.variables = {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"};
    if (o_rank)  // torchrun under mpirun: the two must describe the same process
      GRPO_CHECK(*o_rank == info.rank && o_world == info.world_size,
                 "RANK/WORLD_SIZE ({}/{}) disagree with OMPI_COMM_WORLD_RANK/SIZE ({}/{})", info.rank,
                 info.world_size, *o_rank, o_world.value_or(-1));
  } else if (o_rank || o_world) {
    GRPO_CHECK(o_rank && o_world, "OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE must both be set");
    info.launcher = "mpirun";
    info.rank = *o_rank;
    info.world_size = *o_world;
    info.local_rank = get_int("OMPI_COMM_WORLD_LOCAL_RANK").value_or(info.rank);
    info.local_world_size = get_int("OMPI_COMM_WORLD_LOCAL_SIZE").value_or(info.world_size);
    info.variables = {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                      "OMPI_COMM_WORLD_LOCAL_SIZE"};
    // ranks on more than one node need the rendezvous host named
    GRPO_CHECK(info.local_world_size == info.world_size || getenv("MASTER_ADDR"),
               "mpirun across nodes ({} ranks, {} on this node): pass the rendezvous host with "
               "-x MASTER_ADDR=<host of rank 0> (and -x MASTER_PORT=<port>)", info.world_size,
               info.local_world_size);
  } else if (s_rank || s_world) {
    GRPO_CHECK(s_rank && s_world, "SLURM_PROCID and SLURM_NTASKS must both be set (run under srun)");
    info.launcher = "slurm";
    info.rank = *s_rank;
    info.world_size = *s_world;
    info.local_rank = get_int("SLURM_LOCALID").value_or(0);
    info.local_world_size = get_int("SLURM_NTASKS_PER_NODE").value_or(info.world_size);
    info.variables = {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"};
    if (!getenv("MASTER_ADDR")) {
      auto nodes = getenv("SLURM_STEP_NODELIST");
      if (!nodes || nodes->empty()) nodes = getenv("SLURM_JOB_NODELIST");
      GRPO_CHECK(nodes && !nodes->empty(), "srun: neither MASTER_ADDR nor SLURM_STEP_NODELIST / "
                 "SLURM_JOB_NODELIST is set, so the rendezvous host is unknown");
      info.master_addr = first_slurm_host(*nodes);
    }
    if (!getenv("MASTER_PORT"))
      if (auto job = get_int("SLURM_JOB_ID")) info.master_port = 20000 + *job % 20000;  // one port per job
  }
  if (auto a = getenv("MASTER_ADDR"); a && !a->empty()) info.master_addr = *a;
  if (auto p = get_int("MASTER_PORT")) info.master_port = *p;
  GRPO_CHECK(info.world_size >= 1, "{}: the world size must be at least 1, found {}",
             info.variables.empty() ? "environment" : info.variables[1], info.world_size);
  GRPO_CHECK(info.rank >= 0 && info.rank < info.world_size, "{} = {} is not a rank of a world of {} ({} = {})",
             info.variables.empty() ? "RANK" : info.variables[0], info.rank, info.world_size,
             info.variables.empty() ? "WORLD_SIZE" : info.variables[1], info.world_size);
  GRPO_CHECK(info.local_world_size >= 1 && info.local_world_size <= info.world_size &&
                 info.local_rank >= 0 && info.local_rank < info.local_world_size,
             "local rank {} of {} processes on this node does not fit a world of {} ({})", info.local_rank,
             info.local_world_size, info.world_size, info.launcher);
  GRPO_CHECK(info.master_port > 0 && info.master_port < 65536, "MASTER_PORT {} is not a TCP port", info.master_port);
  return info;
}

LaunchInfo detect_launch() {
  return detect_launch([](const std::string& name) -> std::optional<std::string> {
    const char* v = std::getenv(name.c_str());
    if (!v) return std::nullopt;
    return std::string(v);
  });
}

}  // namespace grpo::dist
