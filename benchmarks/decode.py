"""Decode speed: omni_hf vs transformers' Qwen2.5-Omni, Thinker and Talker, small config, greedy, same weights.

Per generated token: wall time and process CPU time (the CPU figure is less sensitive to other load on a shared
machine), reference and ours alternated, best of `--rounds`; also checks the greedy outputs are identical.

    python benchmarks/decode.py                   # Thinker 152k x 512 head, 8 layers; Talker 384 x 6 layers
    python benchmarks/decode.py --threads 2 --tokens 32
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from thinker import build_checkpoint


def per_token(call, n: int) -> tuple[float, float]:
    """(wall, cpu) seconds per token of `call(n)`, prefill (`call(1)`) subtracted."""
    marks = []
    for count in (1, n + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        call(count)
        marks.append((time.perf_counter() - wall, time.process_time() - cpu))
    return (marks[1][0] - marks[0][0]) / n, (marks[1][1] - marks[0][1]) / n


def compare(name: str, calls: dict, n: int, rounds: int) -> None:
    outputs = {impl: call(n) for impl, call in calls.items()}
    same = torch.equal(*outputs.values())
    best = {impl: [float("inf"), float("inf")] for impl in calls}
    for _ in range(rounds):
        for impl, call in calls.items():
            wall, cpu = per_token(call, n)
            best[impl] = [min(best[impl][0], wall), min(best[impl][1], cpu)]
    (ref_wall, ref_cpu), (our_wall, our_cpu) = best["reference"], best["ours"]
    print(
        f"{name:<8} wall {ref_wall * 1e3:7.1f} -> {our_wall * 1e3:7.1f} ms/token ({ref_wall / our_wall:.2f}x)   "
        f"cpu {ref_cpu * 1e3:7.1f} -> {our_cpu * 1e3:7.1f} ms/token ({ref_cpu / our_cpu:.2f}x)   "
        f"identical greedy output: {same}"
    )


def thinker_calls(path: Path) -> dict:
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from omni_hf import OmniThinkerForConditionalGeneration

    ids = torch.tensor([[1001, *range(10, 60), 1002, 1001, 900]])
    gen = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    models = {
        "reference": Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path).eval(),
        "ours": OmniThinkerForConditionalGeneration.from_pretrained(path).eval(),
    }
    return {impl: (lambda n, m=m: m.generate(input_ids=ids, max_new_tokens=n, **gen)) for impl, m in models.items()}


def talker_calls() -> dict:
    from transformers import Qwen2_5OmniTalkerConfig
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniTalkerForConditionalGeneration

    from omni_hf import OmniTalkerConfig, OmniTalkerForConditionalGeneration
    from omni_hf.talker.configuration_talker import translate_official_talker_config
    from omni_hf.testing.tiny import reinit_, tiny_talker_config_dict

    config = tiny_talker_config_dict("small")
    torch.manual_seed(0)
    reference = reinit_(Qwen2_5OmniTalkerForConditionalGeneration(Qwen2_5OmniTalkerConfig(**config)), std=0.05)
    ours = OmniTalkerForConditionalGeneration(OmniTalkerConfig(**translate_official_talker_config(config)))
    ours.load_state_dict(reference.state_dict(), strict=True)
    width, length = config["embedding_size"], 40
    embeds = torch.randn(1, length, width, generator=torch.Generator().manual_seed(1)) * 0.1
    codes = torch.full((1, length), 8296)
    codes[0, -2:] = torch.tensor([8292, 8293])
    text_ids = torch.tensor([[1001, *range(10, 10 + length - 2), 1002]])
    reply = torch.randn(1, 3, width, generator=torch.Generator().manual_seed(2)) * 0.1
    gen = dict(do_sample=False, suppress_tokens=list(range(8192, 8448)), eos_token_id=8294, pad_token_id=8292)

    def call(model, n):
        return model.generate(
            input_ids=codes,
            inputs_embeds=embeds.clone(),  # the reference writes into it
            input_text_ids=text_ids,
            thinker_reply_part=reply,
            max_new_tokens=n,
            min_new_tokens=n,
            repetition_penalty=1.0,
            **gen,
        )

    return {"reference": lambda n: call(reference.eval(), n), "ours": lambda n: call(ours.eval(), n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16, help="Thinker tokens; the Talker decodes 4x as many")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"Decode benchmark: small config, {args.threads} torch thread(s), best of {args.rounds} alternated runs")
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        build_checkpoint(Path(tmp))
        compare("thinker", thinker_calls(Path(tmp)), args.tokens, args.rounds)
    with torch.no_grad():
        compare("talker", talker_calls(), 4 * args.tokens, args.rounds)


if __name__ == "__main__":
    main()
