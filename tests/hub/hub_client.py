"""Client side of the Hub tests, run in a subprocess whose HF_ENDPOINT points at the stand-in Hub (see conftest.py).

Pushes every artifact with omni_hf.hub, loads each back through the ordinary loaders, runs the Python blocks of each
card, tries bad inputs, and writes what it observed as JSON. The tests assert on that report.

python tests/hub/hub_client.py WORK_DIR REPORT_JSON
"""

import json
import os
import re
import sys
import traceback
import urllib.request
from pathlib import Path

import torch
import yaml

USER = "tester"
SNIPPET_LENGTHS = {"thinker_max_new_tokens": 4, "talker_max_new_tokens": 30}


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k].cpu(), b[k].cpu()) for k in a)


def card_summary(repo_id: str, repo_type: str = "model") -> dict:
    """The card as pushed: its YAML parsed independently, its Python blocks, its text."""
    from huggingface_hub import hf_hub_download

    text = Path(hf_hub_download(repo_id, "README.md", repo_type=repo_type)).read_text()
    header = re.match(r"^---\n(.*?)\n---\n", text, re.S)
    metadata = yaml.safe_load(header.group(1)) if header else None
    return {"metadata": metadata, "text": text, "python": re.findall(r"```python\n(.*?)```", text, re.S)}


def run_snippets(blocks: list[str]) -> str:
    namespace: dict = {"__name__": "__card__"}
    try:
        for block in blocks:
            exec(compile(block, "<card snippet>", "exec"), namespace)
    except Exception:
        return traceback.format_exc(limit=4)
    return "ok"


def outcome(call) -> dict:
    """What a push that should fail did: the exception type and message (or that it wrongly succeeded)."""
    try:
        result = call()
    except Exception as error:
        return {"raised": type(error).__name__, "message": str(error)}
    return {"raised": None, "message": f"returned {result!r}"}


def main(work: Path, report_path: Path) -> None:
    from datasets import Dataset, load_dataset
    from huggingface_hub import HfApi, hf_hub_download, snapshot_download

    from omni_hf import (
        OmniForConditionalGeneration,
        OmniProcessor,
        OmniThinkerForConditionalGeneration,
        OmniToken2WavPipeline,
        SpeakerBank,
    )
    from omni_hf import hub as omni_hub
    from omni_hf.testing.demo import build_demo_model

    torch.set_num_threads(2)
    api = HfApi()
    report: dict = {}
    model_dir = build_demo_model(work / "tiny-omni")
    model = OmniForConditionalGeneration.from_pretrained(model_dir).eval()
    processor = OmniProcessor.from_pretrained(model_dir)
    results = work / "bench.json"
    results.write_text(
        json.dumps(
            {
                "source": "benchmarks/latency.py (test figures)",
                "parity": {"thinker logits max |diff|": 2.5e-06},
                "latency": {"time to first audio (s)": 0.412},
                "rtf": {"total": 0.35},
                "wer": {"test-en (%)": 2.3},
            }
        )
    )

    # full model
    repo = f"{USER}/tiny-omni"
    info = omni_hub.push_model(model, repo, processor=processor, results=str(results), **SNIPPET_LENGTHS)
    loaded = OmniForConditionalGeneration.from_pretrained(repo)
    card = card_summary(repo)
    report["model"] = {
        "commit": info.oid,
        "files": sorted(api.list_repo_files(repo)),
        "weights_equal": state_equal(model.state_dict(), loaded.state_dict()),
        "token2wav_equal": state_equal(model.token2wav.dit.state_dict(), loaded.token2wav.dit.state_dict())
        and state_equal(model.token2wav.vocoder.state_dict(), loaded.token2wav.vocoder.state_dict()),
        "speakers_equal": loaded.speakers.names() == model.speakers.names()
        and all(
            torch.equal(loaded.speakers[n].speaker_embedding, model.speakers[n].speaker_embedding)
            for n in model.speakers.names()
        ),
        "metadata": card["metadata"],
        "text": card["text"],
        "snippet": run_snippets(card["python"]),
    }

    # thinker alone
    repo = f"{USER}/tiny-omni-thinker"
    omni_hub.push_thinker(
        model.thinker, repo, processor=processor, results={"parity": {"logits": 1e-6}}, **SNIPPET_LENGTHS
    )
    thinker = OmniThinkerForConditionalGeneration.from_pretrained(repo)
    card = card_summary(repo)
    report["thinker"] = {
        "files": sorted(api.list_repo_files(repo)),
        "weights_equal": state_equal(model.thinker.state_dict(), thinker.state_dict()),
        "metadata": card["metadata"],
        "text": card["text"],
        "snippet": run_snippets(card["python"]),
        "sha": api.model_info(repo).sha,
    }

    # token2wav pipeline
    repo = f"{USER}/tiny-token2wav"
    omni_hub.push_token2wav(model.token2wav, repo, num_inference_steps=2)
    pipe = OmniToken2WavPipeline.from_pretrained(snapshot_download(repo))
    card = card_summary(repo)
    report["token2wav"] = {
        "files": sorted(api.list_repo_files(repo)),
        "weights_equal": state_equal(model.token2wav.dit.state_dict(), pipe.dit.state_dict())
        and state_equal(model.token2wav.vocoder.state_dict(), pipe.vocoder.state_dict()),
        "metadata": card["metadata"],
        "text": card["text"],
        "snippet": run_snippets(card["python"]),
    }

    # speaker set
    repo = f"{USER}/tiny-speakers"
    omni_hub.push_speakers(model.speakers, repo)
    hf_hub_download(repo, "speakers.json")
    bank = SpeakerBank.load(Path(hf_hub_download(repo, "speakers.safetensors")).parent)
    mixin = SpeakerBank.from_pretrained(repo)  # huggingface_hub's ModelHubMixin loader
    card = card_summary(repo)
    report["speakers"] = {
        "files": sorted(api.list_repo_files(repo)),
        "mixin_load_equal": mixin.names() == bank.names()
        and all(torch.equal(mixin[n].reference_mel, bank[n].reference_mel) for n in bank.names()),
        "weights_equal": bank.names() == model.speakers.names()
        and all(
            torch.equal(bank[n].speaker_embedding, model.speakers[n].speaker_embedding)
            and torch.equal(bank[n].reference_mel, model.speakers[n].reference_mel)
            for n in bank.names()
        ),
        "metadata": card["metadata"],
        "text": card["text"],
        "snippet": run_snippets(card["python"]),
    }

    # voice adapter (LoRA weights made non-zero so "equal" means something)
    model.voice_adapters.add("bright")
    with torch.no_grad():
        for name, param in model.voice_adapters.peft.named_parameters():
            if ".bright." in name:
                param.normal_(0, 0.02)
    expected = {n: p.detach().clone() for n, p in model.voice_adapters.peft.named_parameters() if ".bright." in n}
    repo = f"{USER}/voice-bright"
    omni_hub.push_voice_adapter(model, "bright", repo, base_model=f"{USER}/tiny-omni", **SNIPPET_LENGTHS)
    fresh = OmniForConditionalGeneration.from_pretrained(f"{USER}/tiny-omni")
    fresh.voice_adapters.load(repo, name="bright")
    got = {n: p.detach() for n, p in fresh.voice_adapters.peft.named_parameters() if ".bright." in n}
    card = card_summary(repo)
    report["voice"] = {
        "files": sorted(api.list_repo_files(repo)),
        "weights_equal": state_equal(expected, got) and len(got) > 0,
        "metadata": card["metadata"],
        "text": card["text"],
        "snippet": run_snippets(card["python"]),
    }
    model.voice_adapters.unload()

    # preference dataset (given as a save_to_disk folder)
    rows = {
        "prompt_id": [0, 1, 2],
        "prompt": ["Hello there.", "How are you?", "Good night."],
        "chosen": [[3, 4, 5], [6, 7], [8, 9, 10, 11]],
        "rejected": [[5, 4], [7, 7, 7], [1]],
        "chosen_wer": [0.0, 0.1, 0.0],
        "rejected_wer": [0.5, 0.7, 1.0],
    }
    Dataset.from_dict(rows).save_to_disk(str(work / "pairs"))
    repo = f"{USER}/tiny-pairs"
    omni_hub.push_preference_dataset(work / "pairs", repo, results={"wer": {"chosen mean": 0.033}})
    back = load_dataset(repo, split="train")
    card = card_summary(repo, "dataset")
    report["dataset"] = {
        "files": sorted(api.list_repo_files(repo, repo_type="dataset")),
        "rows_equal": back.to_dict() == rows,
        "metadata": card["metadata"],
        "text": card["text"],
        "snippet": run_snippets(card["python"]),
    }

    # bad inputs and failed uploads
    endpoint = os.environ["HF_ENDPOINT"]
    bad: dict = {}
    bad["invalid_repo_id"] = outcome(lambda: omni_hub.push_speakers(model.speakers, "not a valid id!"))
    bad["repo_id_without_namespace"] = outcome(lambda: omni_hub.push_speakers(model.speakers, "just-a-name"))
    bad["bad_results"] = outcome(lambda: omni_hub.push_speakers(model.speakers, f"{USER}/x", results={"wer": [1]}))
    bad["not_a_dataset"] = outcome(lambda: omni_hub.push_preference_dataset({"a": 1}, f"{USER}/y"))
    token = os.environ.pop("HF_TOKEN")
    bad["no_token"] = outcome(lambda: omni_hub.push_speakers(model.speakers, f"{USER}/no-token"))
    os.environ["HF_TOKEN"] = token
    bad["no_token_repo_exists"] = api.repo_exists(f"{USER}/no-token")

    def fail_next_commit():
        request = urllib.request.Request(f"{endpoint}/_fake/fail-commits", data=b'{"n": 1}', method="POST")
        urllib.request.urlopen(request, timeout=10).close()

    fail_next_commit()
    bad["failed_commit_new_repo"] = outcome(lambda: omni_hub.push_speakers(model.speakers, f"{USER}/fails"))
    bad["failed_commit_new_repo_exists"] = api.repo_exists(f"{USER}/fails")
    before = api.model_info(f"{USER}/tiny-omni-thinker").sha
    fail_next_commit()
    bad["failed_commit_existing"] = outcome(
        lambda: omni_hub.push_speakers(model.speakers, f"{USER}/tiny-omni-thinker")
    )
    bad["failed_commit_existing_unchanged"] = api.model_info(
        f"{USER}/tiny-omni-thinker"
    ).sha == before and "speakers.json" not in api.list_repo_files(f"{USER}/tiny-omni-thinker")
    report["bad"] = bad
    snapshot = snapshot_download(f"{USER}/tiny-omni")
    report["snapshot_files"] = sorted(str(p.relative_to(snapshot)) for p in Path(snapshot).rglob("*") if p.is_file())
    report_path.write_text(json.dumps(report, indent=2, default=str))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
