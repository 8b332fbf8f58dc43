// grpo_sandbox: the helper that sets up reward/sandbox.h's sandboxes. libgrpo starts it with
// posix_spawn for each run (a request on stdin, the result on stdout), so that the process running
// the sandbox is this small one, not a trainer holding gigabytes (see run_sandboxed). Not a user
// command: it speaks a binary protocol, and links neither LibTorch nor libgrpo (fast to start).
#include "grpo/reward/sandbox.h"

int main() { return grpo::reward::serve_sandbox_request(0, 1); }
