"""Decode speed: omni_hf vs transformers' Qwen2.5-Omni, Thinker and Talker, small config, greedy, same weights.

Per generated token: wall time and process CPU time (the CPU figure is less sensitive to other load on a shared
machine), reference and ours alternated, best of `--rounds`; also checks the greedy outputs are identical.

    python benchmarks/decode.py                   # Thinker 152k x 512 head, 8 layers; Talker 384 x 6 layers
    python benchmarks/decode.py --threads 2 --tokens 32

Three runs per stage: transformers' reference, omni_hf's lean loop (the default), and omni_hf with
`cache_implementation="static", compile_config=CompileConfig(...)` (a compiled decode step; its compile time is the
"first call" column, paid once per model).
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from transformers import CompileConfig

from thinker import build_checkpoint


def per_token(call, n: int) -> tuple[float, float]:
    """(wall, cpu) seconds per token of `call(n)`, prefill (`call(1)`) subtracted."""
    marks = []
    for count in (1, n + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        call(count)
        marks.append((time.perf_counter() - wall, time.process_time() - cpu))
    return (marks[1][0] - marks[0][0]) / n, (marks[1][1] - marks[0][1]) / n


def compare(name: str, calls: dict, n: int, rounds: int) -> dict:
    """Alternate the implementations `rounds` times; print and return each one's best (wall, cpu) per token."""
    warmup = {}
    for impl, call in calls.items():
        start = time.perf_counter()
        call(2)  # a compiled step is compiled here, once per model
        warmup[impl] = time.perf_counter() - start
    outputs = {impl: call(n) for impl, call in calls.items()}
    reference = outputs["reference"]
    best = {impl: [float("inf"), float("inf")] for impl in calls}
    for _ in range(rounds):
        for impl, call in calls.items():
            wall, cpu = per_token(call, n)
            best[impl] = [min(best[impl][0], wall), min(best[impl][1], cpu)]
    ref_wall, ref_cpu = best["reference"]
    for impl in calls:
        wall, cpu = best[impl]
        same = torch.equal(outputs[impl], reference)
        print(
            f"{name:<8} {impl:<15} wall {wall * 1e3:6.2f} ms/token ({ref_wall / wall:.2f}x)   "
            f"cpu {cpu * 1e3:6.2f} ms/token ({ref_cpu / cpu:.2f}x)   first call {warmup[impl]:5.1f} s   "
            f"greedy output identical to the reference: {same}"
        )
    return best


def with_compiled(calls: dict, options: dict) -> dict:
    """Add an "ours, compiled" entry: the same call with a static cache and a compiled decode step."""
    config = CompileConfig(options=options)
    calls["ours, compiled"] = lambda n, call=calls["ours"]: call(
        n, cache_implementation="static", compile_config=config
    )
    return calls


def thinker_calls(path: Path) -> dict:
    from transformers import Qwen2_5OmniThinkerForConditionalGeneration

    from omni_hf import OmniThinkerForConditionalGeneration

    ids = torch.tensor([[1001, *range(10, 60), 1002, 1001, 900]])
    gen = dict(do_sample=False, eos_token_id=None, pad_token_id=0)
    models = {
        "reference": Qwen2_5OmniThinkerForConditionalGeneration.from_pretrained(path).eval(),
        "ours": OmniThinkerForConditionalGeneration.from_pretrained(path).eval(),
    }
    return {
        impl: (lambda n, m=m, **extra: m.generate(input_ids=ids, max_new_tokens=n, **gen, **extra))
        for impl, m in models.items()
    }


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
    # Prompt positions carry the codec mask token only: the official prompt ends in (pad, bos), but transformers 5.24
    # reads that pad as padding and masks it, which no real reply does (see the README's note on its quirks).
    codes = torch.full((1, length), 8296)
    text_ids = torch.tensor([[1001, *range(10, 10 + length - 2), 1002]])
    reply = torch.randn(1, 3, width, generator=torch.Generator().manual_seed(2)) * 0.1
    gen = dict(do_sample=False, suppress_tokens=list(range(8192, 8448)), eos_token_id=8294, pad_token_id=8292)

    def call(model, n, **extra):
        return model.generate(
            input_ids=codes,
            inputs_embeds=embeds.clone(),  # the reference writes into it
            input_text_ids=text_ids,
            thinker_reply_part=reply,
            max_new_tokens=n,
            min_new_tokens=n,
            repetition_penalty=1.0,
            **gen,
            **extra,
        )

    return {"reference": lambda n: call(reference.eval(), n), "ours": lambda n, **extra: call(ours.eval(), n, **extra)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16, help="Thinker tokens; the Talker decodes 4x as many")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="skip the compiled decode step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"Decode benchmark: small config, {args.threads} torch thread(s), best of {args.rounds} alternated runs")
    options = {"cpp_wrapper": True}  # inductor's C++ wrapper: no Python between the step's kernels
    results = {}
    with torch.no_grad(), tempfile.TemporaryDirectory() as tmp:
        build_checkpoint(Path(tmp))
        calls = thinker_calls(Path(tmp))
        results["Thinker"] = compare(
            "thinker", calls if args.no_compile else with_compiled(calls, options), args.tokens, args.rounds
        )
    with torch.no_grad():
        calls = talker_calls()
        results["Talker"] = compare(
            "talker", calls if args.no_compile else with_compiled(calls, options), 4 * args.tokens, args.rounds
        )
    for stage, best in results.items():
        fastest = min((impl for impl in best if impl != "reference"), key=lambda impl: best[impl][0])
        ratio = best["reference"][0] / best[fastest][0]
        verdict = "met" if ratio >= 1.5 else "NOT met"
        print(f"TARGET decode {stage}: >= 1.5x the reference's tokens/s -> {ratio:.2f}x ({fastest}): {verdict}")


if __name__ == "__main__":
    main()
