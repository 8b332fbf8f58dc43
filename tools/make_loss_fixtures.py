#!/usr/bin/env python3
"""Generates tests/fixtures/loss/trl_cases.json: GRPO losses and their gradients with respect to the
per-token log-probabilities and entropies, computed by TRL's own loss code (TRL 1.16.0, pinned in
tools/requirements.txt), the reference for grpo's policy loss (src/algo/grpo_loss.cpp).

Run:  $(tools/setup_reference.sh) tools/make_loss_fixtures.py

How TRL is called (everything float64, one process, no gradient accumulation, training mode):
  * `t = object.__new__(GRPOTrainer)`: an instance whose __init__ never ran (no model, no
    accelerate state), given only the attributes `GRPOTrainer._compute_loss` reads for these
    options: loss_type, importance_sampling_level, epsilon_low, epsilon_high, beta,
    top_entropy_quantile=1.0 (no entropy mask), off_policy_mask_threshold=None, use_vllm=False,
    vllm_importance_sampling_correction=False, aux_loss_enabled=False, model.training=True,
    current_gradient_accumulation_steps=1, max_completion_length, _entropy_bonus_enabled,
    entropy_coef, use_adaptive_entropy=False, _metrics, args=SimpleNamespace(delta,
    use_bias_correction_kl=False, steps_per_generation=1) and an accelerator stand-in for one
    process (num_processes=1, sync_gradients=True, gather/gather_for_metrics/reduce = identity).
    None of these stand-ins enters the loss other than as the single-process, no-accumulation
    value (normalisers of 1); the accelerator calls only feed TRL's logged metrics.
  * `t._get_per_token_logps_and_entropies` (the model forward) is replaced by a function returning
    `(logp_leaf, entropy_leaf, None)`, both float64 leaf tensors with requires_grad=True.
  * inputs: prompt_ids / prompt_mask = dummy [B, 1] tensors, completion_ids = dummy [B, T] ints,
    completion_mask [B, T] int64 (as TRL builds it: right-padded ones then zeros), advantages [B],
    old_per_token_logps [B, T], ref_per_token_logps [B, T] (only when beta != 0) and
    num_items_in_batch = completion_mask.sum() (used by dapo).
  * `loss = GRPOTrainer._compute_loss(t, None, inputs); loss.backward()`; recorded: loss.item(),
    logp_leaf.grad and entropy_leaf.grad (zeros when no gradient reaches the entropies).

Inputs (torch.Generator seeded per case, float64; B = 6 rows, T = 9 tokens, row lengths
LENGTHS below: one full row, one empty row): logp = log(U(0.05, 0.95)); old_logp = logp + N(0, 0.3)
(token level) or logp + N(0, 0.0005) (sequence level); ref_logp = logp + N(0, 0.2);
advantages = N(0, 1) with row ZERO_ADV_ROW set to exactly 0.0; entropy = U(0.1, 3.0).
Padding positions hold random values too; they must not matter.

Output: {"generator", "trl", "torch", "cases": [...]}, each case {"name", "seed", "loss_type",
"importance_sampling_level", "epsilon_low", "epsilon_high", "beta", "delta" (null if none),
"entropy_coef", "max_completion_length", "logp", "old_logp", "ref_logp", "advantages", "mask",
"entropy", "loss", "grad_logp", "grad_entropy", "sequence_ratio", "sequence_outside_clip"}
([B, T] tensors as 2-D lists of floats, the mask as 0.0 / 1.0; the last two are per-row lists for
sequence-level cases and null otherwise). Floats are written by Python's json (shortest repr that
round-trips, so bit-exact).
"""
import json
import os
from collections import defaultdict
from types import SimpleNamespace

import torch
import trl
from trl.trainer.grpo_trainer import GRPOTrainer

TRL_VERSION = "1.16.0"
TORCH_VERSION = "2.11.0"
assert trl.__version__ == TRL_VERSION, f"need trl=={TRL_VERSION}, have {trl.__version__}"
assert torch.__version__.split("+")[0] == TORCH_VERSION, \
    f"need torch=={TORCH_VERSION}, have {torch.__version__}"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "loss", "trl_cases.json")
GENERATOR = "$(tools/setup_reference.sh) tools/make_loss_fixtures.py"

B, T = 6, 9
LENGTHS = [9, 5, 1, 7, 3, 0]
ZERO_ADV_ROW = 3
F64 = torch.float64

# name: options (defaults below). Each seed is the first from 1000 + 100 * index up whose inputs pass
# the clipping checks in run_case (at least two tokens clipped low and two high, ...).
CASES = [
    ("grpo", dict(seed=1006, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.2)),
    ("grpo_clip_higher", dict(seed=1102, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.28)),
    ("grpo_kl", dict(seed=1225, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.28, beta=0.04)),
    ("bnpo", dict(seed=1305, loss_type="bnpo", epsilon_low=0.2, epsilon_high=0.28)),
    ("dr_grpo", dict(seed=1403, loss_type="dr_grpo", epsilon_low=0.2, epsilon_high=0.2,
                     max_completion_length=12)),  # > T on purpose
    ("dapo", dict(seed=1501, loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28)),
    ("dapo_kl", dict(seed=1600, loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28, beta=0.04)),
    ("gspo", dict(seed=1701, loss_type="grpo", importance_sampling_level="sequence", epsilon_low=3e-4,
                  epsilon_high=4e-4)),
    ("gspo_dapo", dict(seed=1800, loss_type="dapo", importance_sampling_level="sequence", epsilon_low=3e-4,
                       epsilon_high=4e-4)),
    ("grpo_delta", dict(seed=1915, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.28, delta=1.5)),
    ("grpo_entropy", dict(seed=2010, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.28,
                          entropy_coef=0.01)),
    # the other objectives of TRL 1.16 (cispo: epsilon_high is the cap on the ratio)
    ("cispo", dict(seed=2100, loss_type="cispo", epsilon_low=0.2, epsilon_high=1.3)),
    ("sapo", dict(seed=2200, loss_type="sapo", epsilon_low=0.2, epsilon_high=0.28)),
    ("vespo", dict(seed=2300, loss_type="vespo", epsilon_low=0.2, epsilon_high=0.28, old_noise=0.1)),
    ("luspo", dict(seed=2407, loss_type="luspo", importance_sampling_level="sequence", epsilon_low=3e-4,
                   epsilon_high=4e-4)),
    ("grpo_kl_ratio", dict(seed=2500, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.28, beta=0.04,
                           use_bias_correction_kl=True)),
    # sampler-vs-trainer corrections (TRL's use_vllm path): the importance_sampling_ratio input comes
    # from TRL's own code (trl_importance_sampling_ratio)
    ("dapo_tis_token", dict(seed=2600, loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28,
                            is_mode="token_truncate", is_max=1.5, sampling_noise=0.4)),
    ("dapo_tis_sequence", dict(seed=2728, loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28,
                               is_mode="sequence_truncate", is_min=0.8, is_max=1.25, sampling_noise=0.1)),
    ("grpo_mis_token", dict(seed=2800, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.28,
                            is_mode="token_mask", is_max=1.5, sampling_noise=0.4)),
    ("grpo_mis_sequence", dict(seed=2904, loss_type="grpo", epsilon_low=0.2, epsilon_high=0.28,
                               is_mode="sequence_mask", is_min=0.8, is_max=1.25, sampling_noise=0.1)),
    ("dapo_icepop", dict(seed=3000, loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28, is_mode="token_mask",
                         is_min=0.5, is_max=5.0, sampling_noise=0.9)),
    ("vespo_mis_token", dict(seed=3100, loss_type="vespo", epsilon_low=0.2, epsilon_high=0.28, old_noise=0.1,
                             is_mode="token_mask", is_max=1.5, sampling_noise=0.3)),
    ("dapo_opsm", dict(seed=3204, loss_type="dapo", epsilon_low=0.2, epsilon_high=0.28, opsm=0.05,
                       sampling_noise=0.3)),
]
DEFAULTS = dict(importance_sampling_level="token", beta=0.0, delta=None, entropy_coef=0.0,
                max_completion_length=T, use_bias_correction_kl=False, old_noise=None, is_mode=None,
                is_min=None, is_max=None, sampling_noise=0.0, opsm=None)
CLIP_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo", "luspo")
# TRL's defaults for the objectives' own parameters (GRPOConfig)
SAPO = dict(sapo_temperature_pos=1.0, sapo_temperature_neg=1.05)
VESPO = dict(vespo_k_pos=2.0, vespo_lambda_pos=3.0, vespo_k_neg=3.0, vespo_lambda_neg=2.0)


class OneProcessAccelerator:
    """The accelerate calls _compute_loss makes, for a single process (they only feed metrics)."""
    num_processes = 1
    sync_gradients = True
    is_main_process = True

    @staticmethod
    def gather(x):
        return x

    @staticmethod
    def gather_for_metrics(x):
        return x

    @staticmethod
    def reduce(x, reduction="sum"):
        assert reduction == "sum"
        return x


def make_trainer(o):
    t = object.__new__(GRPOTrainer)
    t.loss_type = o["loss_type"]
    t.importance_sampling_level = o["importance_sampling_level"]
    t.epsilon_low = o["epsilon_low"]
    t.epsilon_high = o["epsilon_high"]
    t.beta = o["beta"]
    t.top_entropy_quantile = 1.0
    t.off_policy_mask_threshold = o["opsm"]
    t.use_vllm = o["is_mode"] is not None
    t.vllm_importance_sampling_correction = o["is_mode"] is not None
    t.vllm_importance_sampling_mode = o["is_mode"]
    t.vllm_importance_sampling_clip_min = o["is_min"]
    t.vllm_importance_sampling_clip_max = o["is_max"]
    t.aux_loss_enabled = False
    t.model = SimpleNamespace(training=True)
    t.current_gradient_accumulation_steps = 1
    t.max_completion_length = o["max_completion_length"]
    t._entropy_bonus_enabled = o["entropy_coef"] != 0.0
    t.entropy_coef = o["entropy_coef"]
    t.use_adaptive_entropy = False
    t._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    t.args = SimpleNamespace(delta=o["delta"], use_bias_correction_kl=o["use_bias_correction_kl"],
                             steps_per_generation=1, **SAPO, **VESPO)
    t.accelerator = OneProcessAccelerator()
    return t


def trl_importance_sampling_ratio(t, completion_mask, old_per_token_logps, sampling_per_token_logps):
    """TRL's own importance-sampling-ratio code: the block of GRPOTrainer._generate_and_score_completions
    under `if self.use_vllm and self.vllm_importance_sampling_correction:`, taken from the installed
    source and run as it is (it is not a function of its own in TRL)."""
    import inspect
    import math
    import textwrap
    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    head = "if self.use_vllm and self.vllm_importance_sampling_correction:"
    start = src.index(head)
    end = src.index("# Compute the per-token log probabilities for the reference model", start)
    block = textwrap.dedent(src[start:end].split("\n", 1)[1])
    scope = dict(self=t, torch=torch, math=math, completion_mask=completion_mask, tool_mask=None,
                 old_per_token_logps=old_per_token_logps, sampling_per_token_logps=sampling_per_token_logps)
    exec(block, scope)
    return scope["vllm_importance_sampling_ratio"]


def make_inputs(seed, sequence_level, old_noise=None, sampling_noise=0.0):
    g = torch.Generator().manual_seed(seed)

    def uniform(lo, hi):
        return lo + (hi - lo) * torch.rand(B, T, generator=g, dtype=F64)

    def normal(std, *shape):
        return std * torch.randn(*(shape or (B, T)), generator=g, dtype=F64)

    logp = torch.log(uniform(0.05, 0.95))
    old_logp = logp + normal(old_noise if old_noise is not None else 0.0005 if sequence_level else 0.3)
    ref_logp = logp + normal(0.2)
    advantages = normal(1.0, B)
    advantages[ZERO_ADV_ROW] = 0.0
    entropy = uniform(0.1, 3.0)
    mask = (torch.arange(T).unsqueeze(0) < torch.tensor(LENGTHS).unsqueeze(1)).long()
    sampling_logp = old_logp + normal(sampling_noise)  # drawn last: the earlier cases' inputs stay as they were
    return dict(logp=logp, old_logp=old_logp, ref_logp=ref_logp, advantages=advantages, entropy=entropy,
                mask=mask, sampling_logp=sampling_logp)


def run_case(name, opts):
    o = {**DEFAULTS, **opts}
    seed = o.pop("seed")
    x = make_inputs(seed, o["importance_sampling_level"] == "sequence", o["old_noise"], o["sampling_noise"])
    t = make_trainer(o)

    logp_leaf = x["logp"].clone().requires_grad_(True)
    entropy_leaf = x["entropy"].clone().requires_grad_(True)

    def fake_forward(model, input_ids, attention_mask, logits_to_keep, compute_entropy=False,
                     compute_aux_loss=False, **kwargs):
        assert compute_entropy and logits_to_keep == T and input_ids.shape == (B, 1 + T)
        return logp_leaf, entropy_leaf, None

    t._get_per_token_logps_and_entropies = fake_forward
    mask = x["mask"]
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long),
        "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long),
        "completion_mask": mask,
        "advantages": x["advantages"].clone(),
        "old_per_token_logps": x["old_logp"].clone(),
        "num_items_in_batch": mask.sum(),
    }
    if o["beta"] != 0.0:
        inputs["ref_per_token_logps"] = x["ref_logp"].clone()
    is_ratio = None
    if o["is_mode"] is not None:
        is_ratio = trl_importance_sampling_ratio(t, mask, x["old_logp"].clone(), x["sampling_logp"].clone())
        inputs["importance_sampling_ratio"] = is_ratio
    if o["opsm"] is not None:
        inputs["sampling_per_token_logps"] = x["sampling_logp"].clone()

    loss = GRPOTrainer._compute_loss(t, None, inputs)
    assert loss.dtype == F64 and loss.dim() == 0
    loss.backward()
    grad_logp = logp_leaf.grad
    grad_entropy = entropy_leaf.grad if entropy_leaf.grad is not None else torch.zeros_like(entropy_leaf)
    assert (o["entropy_coef"] != 0.0) == (entropy_leaf.grad is not None), name
    # nothing reaches padding
    assert torch.all(grad_logp[mask == 0] == 0) and torch.all(grad_entropy[mask == 0] == 0), name

    # The fixture must exercise clipping.
    m = mask.bool()
    adv = x["advantages"].unsqueeze(1)
    lo, hi = 1 - o["epsilon_low"], 1 + o["epsilon_high"]
    seq_ratio = seq_outside = None
    if is_ratio is not None:  # the correction must bind somewhere and leave some tokens alone
        w = is_ratio.expand_as(x["logp"])
        r = torch.exp(((x["old_logp"] - x["sampling_logp"]) * mask).sum(-1, keepdim=True)
                      if o["is_mode"].startswith("sequence") else x["old_logp"] - x["sampling_logp"]).expand_as(w)
        changed = m & (w != r)
        assert changed.any() and (m & ~changed).any(), (name, int(changed.sum()))
        print(f"  {name}: {int(changed.sum())} of {int(m.sum())} tokens truncated or masked")
    if o["opsm"] is not None:
        keep = GRPOTrainer.get_off_policy_mask(adv, x["logp"], x["sampling_logp"], mask, o["opsm"])
        assert (keep == 0).any() and (keep[mask.sum(-1) > 0] == 1).any(), (name, keep.flatten().tolist())
        print(f"  {name}: sequences kept {keep.flatten().tolist()}")
    if o["loss_type"] not in CLIP_TYPES:
        if o["loss_type"] == "cispo":
            capped = m & (torch.exp(x["logp"] - x["old_logp"]) > o["epsilon_high"])
            assert capped.sum() >= 2, (name, int(capped.sum()))
            print(f"  {name}: {int(capped.sum())} ratios capped")
    elif o["importance_sampling_level"] == "token":
        ratio = torch.exp(x["logp"] - x["old_logp"])
        low = m & (ratio < lo) & (adv < 0)    # clipped: the gradient of these tokens is zero
        high = m & (ratio > hi) & (adv > 0)
        assert low.sum() >= 2 and high.sum() >= 2, (name, int(low.sum()), int(high.sum()))
        assert (m & ((ratio < lo) & (adv > 0) | (ratio > hi) & (adv < 0))).any(), name  # outside, not clipped
        if o["delta"] is not None:
            assert (m & (ratio > o["delta"]) & (adv < 0)).any(), name  # two-sided clip active
        print(f"  {name}: {int(low.sum())} tokens clipped low, {int(high.sum())} clipped high "
              f"(of {int(m.sum())})")
    else:
        lengths = mask.sum(-1)
        r = torch.exp(((x["logp"] - x["old_logp"]) * mask).sum(-1) / lengths.clamp(min=1))
        seq_ratio = r.tolist()
        seq_outside = [bool(v) for v in ((r < lo) | (r > hi))]
        nonempty = lengths > 0
        outside = torch.tensor(seq_outside)
        assert (nonempty & outside).any() and (nonempty & ~outside).any(), (name, seq_outside)
        clipped = nonempty & ((r < lo) & (x["advantages"] < 0) | (r > hi) & (x["advantages"] > 0))
        assert clipped.any(), (name, seq_ratio)
        print(f"  {name}: sequences outside [1-eps_low, 1+eps_high]: {seq_outside}, "
              f"clipped (gradient zero): {clipped.tolist()}")

    return {
        "name": name,
        "seed": seed,
        "loss_type": o["loss_type"],
        "importance_sampling_level": o["importance_sampling_level"],
        "epsilon_low": o["epsilon_low"],
        "epsilon_high": o["epsilon_high"],
        "beta": o["beta"],
        "delta": o["delta"],
        "entropy_coef": o["entropy_coef"],
        "max_completion_length": o["max_completion_length"],
        "use_bias_correction_kl": o["use_bias_correction_kl"],
        "sapo": SAPO,
        "vespo": VESPO,
        "is_mode": o["is_mode"],
        "is_min": o["is_min"],
        "is_max": o["is_max"],
        "opsm": o["opsm"],
        "sampling_logp": x["sampling_logp"].tolist(),
        "importance_sampling_ratio": None if is_ratio is None else is_ratio.expand_as(x["logp"]).tolist(),
        "logp": x["logp"].tolist(),
        "old_logp": x["old_logp"].tolist(),
        "ref_logp": x["ref_logp"].tolist(),
        "advantages": x["advantages"].tolist(),
        "mask": mask.to(F64).tolist(),
        "entropy": x["entropy"].tolist(),
        "loss": loss.item(),
        "grad_logp": grad_logp.tolist(),
        "grad_entropy": grad_entropy.tolist(),
        "sequence_ratio": seq_ratio,
        "sequence_outside_clip": seq_outside,
    }


def main():
    cases = []
    for name, opts in CASES:
        c = run_case(name, opts)
        print(f"{name:18s} loss = {c['loss']!r}")
        cases.append(c)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    doc = {"generator": GENERATOR, "trl": trl.__version__, "torch": TORCH_VERSION, "cases": cases}
    with open(OUT, "w") as f:
        json.dump(doc, f, allow_nan=False)
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases (trl {trl.__version__}, torch {torch.__version__})")


if __name__ == "__main__":
    main()
