"""Each stage recipe trains 2-3 steps on a tiny model on CPU through its real entry point (`main(argv)`): frozen
parameters stay exactly equal, trainable ones change; bad rows are dropped with counts; bad configs fail clearly."""

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from helpers.recipes import RECIPES, load_recipe  # noqa: E402
from omni_hf.testing.demo import build_demo_model  # noqa: E402
from omni_hf.testing.media import espeak_speech, write_image  # noqa: E402

FAST = ["--max_steps", "2", "--batch_size", "2", "--logging_steps", "1", "--warmup_ratio", "0", "--save_steps", "1"]


def _recipe(name: str):
    return load_recipe(name)


def _write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


@pytest.fixture(scope="module")
def thinker_dir(tmp_path_factory):
    return build_demo_model(tmp_path_factory.mktemp("tiny_thinker"), speech=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Pairs (audio, image, a text document, one missing file, one undecodable wav) and ChatML dialogues."""
    root = tmp_path_factory.mktemp("stage_data")
    for word in ("three", "seven"):
        wave, rate = espeak_speech(word)
        sf.write(root / f"{word}.wav", wave, rate)
    write_image(root / "shapes.png", 56, 56)
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really audio")
    _write_jsonl(
        root / "pairs.jsonl",
        [
            {"audio": "three.wav", "text": "three"},
            {"image": "shapes.png", "text": "a red circle"},
            {"audio": "seven.wav", "text": "seven"},
            {"audio": "missing.wav", "text": "four"},
            {"audio": "broken.wav", "text": "five"},
            {"text": "The quick brown fox jumps over the lazy dog. " * 6},
        ],
    )
    user = {"role": "user", "content": [{"type": "audio", "audio": "three.wav"}, {"type": "text", "text": "Number?"}]}
    image_user = {"role": "user", "content": [{"type": "image", "image": "shapes.png"}, {"type": "text", "text": "?"}]}
    answer = {"role": "assistant", "content": [{"type": "text", "text": "three"}]}
    _write_jsonl(
        root / "sft.jsonl",
        [
            {"messages": [user, answer]},
            {"messages": [image_user, {"role": "assistant", "content": [{"type": "text", "text": "a red circle"}]}]},
            {"messages": [{"role": "user", "content": [{"type": "text", "text": "Hello"}]}, answer]},
        ],
    )
    return root


def _weights(path) -> dict[str, torch.Tensor]:
    return load_file(Path(path) / "model.safetensors")


def _assert_frozen_and_trained(base: dict, trained: dict, trainable_prefixes: tuple[str, ...]):
    changed, frozen = [], []
    for name, tensor in base.items():
        if name.startswith(trainable_prefixes):
            changed.append(not torch.equal(tensor, trained[name]))
        else:
            assert torch.equal(tensor, trained[name]), f"frozen {name} changed"
            frozen.append(name)
    # Every trainable matrix moved (a few vectors, e.g. norms feeding a path without gradient, may not).
    assert sum(changed) >= 0.8 * len(changed) and any(changed), f"{sum(changed)}/{len(changed)} trainable changed"
    return len(frozen)


@pytest.mark.parametrize(
    "recipe, stage, trainable",
    [
        ("stage1_encoders", "stage1_adapters", ("audio_tower.proj", "audio_tower.ln_post", "visual.merger")),
        ("stage1_encoders", "stage1_encoders", ("audio_tower", "visual")),
    ],
)
def test_stage1_trains_encoders_only(recipe, stage, trainable, thinker_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["--model", str(thinker_dir), "--data", str(data_dir / "pairs.jsonl"), "--output_dir", str(out)]
    metrics = _recipe(recipe).main([*argv, "--stage", stage, "--learning_rate", "1e-2", *FAST])
    assert metrics["steps"] == 2 and metrics["stage"] == stage
    assert metrics["data"]["rows"] == 6 and metrics["data"]["kept"] == 4
    assert metrics["data"]["missing_media"] == 1 and metrics["data"]["undecodable_media"] == 1
    n_frozen = _assert_frozen_and_trained(_weights(thinker_dir), _weights(out), trainable)
    assert n_frozen > 0 and metrics["frozen_parameters"] > metrics["trainable_parameters"] > 0
    card = (out / "README.md").read_text()
    assert stage in card and "kept: 4" in card and "missing_media: 1" in card


def test_stage2_packs_and_trains_everything(thinker_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["--model", str(thinker_dir), "--data", str(data_dir / "pairs.jsonl"), "--output_dir", str(out)]
    metrics = _recipe("stage2_pretrain").main([*argv, "--max_length", "160", *FAST])
    assert metrics["data"]["packed_rows"] < metrics["data"]["kept"] == 4  # packed into fewer rows
    assert metrics["data"]["max_tokens"] <= 160 and metrics["frozen_parameters"] == 0
    _assert_frozen_and_trained(_weights(thinker_dir), _weights(out), ("",))


def test_stage3_long_context_truncates_by_rule(thinker_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["--model", str(thinker_dir), "--data", str(data_dir / "pairs.jsonl"), "--output_dir", str(out)]
    metrics = _recipe("stage3_long_context").main(
        [
            *argv,
            "--max_length",
            "48",
            "--too_long",
            "truncate",
            "--packing",
            "false",
            "--gradient_checkpointing",
            "true",
            *FAST,
        ]
    )
    data = metrics["data"]
    # The text document (61 tokens) is cut to 48 and kept; the audio rows have audio past the cut: dropped; the
    # image row keeps its image but loses its whole answer: dropped as no_labels.
    assert data["truncated"] == 1 and data["too_long"] == 2 and data["no_labels"] == 1 and data["kept"] == 1
    assert data["max_tokens"] == 48
    assert metrics["steps"] == 2


def test_sft_trains_and_resumes(thinker_dir, data_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["--model", str(thinker_dir), "--data", str(data_dir / "sft.jsonl"), "--output_dir", str(out)]
    first = _recipe("sft").main([*argv, "--learning_rate", "1e-2", *FAST])
    assert first["steps"] == 2 and first["data"]["kept"] == 3
    _assert_frozen_and_trained(_weights(thinker_dir), _weights(out), ("",))
    with pytest.raises(SystemExit, match="not empty"):  # nothing lost: a finished run is not overwritten
        _recipe("sft").main([*argv, *FAST])
    resumed = _recipe("sft").main([*argv, "--resume", *FAST[2:], "--max_steps", "3"])
    assert resumed["steps"] == 3 and (out / "checkpoint-3").is_dir()


def test_talker_icl_trains_the_talker_only(tiny_omni_dir, tmp_path):
    full = tiny_omni_dir
    rows = [
        {"text": "sentence number one", "codes": [3, 1, 4, 1, 5, 9, 2, 6]},
        {
            "messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi there"}],
            "codes": [2, 7, 1, 8],
        },
        {"text": "no codes here"},
    ]
    data = _write_jsonl(tmp_path / "talker.jsonl", rows)
    out = tmp_path / "out"
    metrics = _recipe("talker_icl").main(
        ["--model", str(full), "--data", str(data), "--output_dir", str(out), "--learning_rate", "1e-2", *FAST]
    )
    assert metrics["data"] == {"rows": 3, "kept": 2, "malformed": 1} and metrics["steps"] == 2
    n_frozen = _assert_frozen_and_trained(_weights(full), _weights(out), ("talker.",))
    assert n_frozen > 0 and all(
        torch.equal(v, _weights(full)[k]) for k, v in _weights(out).items() if k.startswith("thinker.")
    )


def test_bad_configs_fail_clearly(thinker_dir, data_dir, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        f"stage: stage4_magic\nmodel: {thinker_dir}\ndata: {data_dir / 'sft.jsonl'}\noutput_dir: {tmp_path}/o\n"
    )
    with pytest.raises(ValueError, match="Unknown stage 'stage4_magic': expected one of"):
        _recipe("sft").main(["--config", str(config)])
    config.write_text("stage: stage2_pretrain\n")  # a real stage, but not one this recipe runs
    with pytest.raises(ValueError, match=r"Unknown stage 'stage2_pretrain': expected one of \['sft'\]"):
        _recipe("sft").main(["--config", str(config), "--model", "m", "--data", "d", "--output_dir", "o"])
    config.write_text("learning_rat: 0.1\n")
    with pytest.raises(SystemExit):
        _recipe("sft").main(["--config", str(config)])
    with pytest.raises(ValueError, match="trainable prefix 'audio_towr' matches no parameter"):
        _recipe("stage1_encoders").main(
            ["--model", str(thinker_dir), "--data", str(data_dir / "pairs.jsonl"), "--output_dir", str(tmp_path / "x")]
            + ["--trainable", "audio_towr", *FAST]
        )
    only_bad = _write_jsonl(tmp_path / "bad.jsonl", [{"audio": "missing.wav", "text": "x"}, {"foo": 1}])
    with pytest.raises(ValueError, match=r"No usable training rows out of 2 \(malformed=1, missing_media=1\)"):
        _recipe("sft").main(
            ["--model", str(thinker_dir), "--data", str(only_bad), "--output_dir", str(tmp_path / "y")]
        )
    with pytest.raises(FileNotFoundError, match="nope.jsonl"):
        _recipe("sft").main(["--model", str(thinker_dir), "--data", "nope.jsonl", "--output_dir", str(tmp_path / "z")])


def test_configs_parse():
    from accelerate.commands.config.config_args import load_config_from_file

    expected = {"single_gpu": "NO", "ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed_zero3": "DEEPSPEED"}
    for name, kind in expected.items():
        config = load_config_from_file(str(RECIPES / "accelerate_configs" / f"{name}.yaml"))
        assert config.distributed_type.value == kind, name
    from omni_hf.training.run import parse_args

    for recipe in ("stage1_encoders", "stage2_pretrain", "stage3_long_context", "sft", "talker_icl"):
        for suffix in ("", "_tiny"):
            main = _recipe(recipe).main
            stage, script, training = parse_args(
                main.stage,
                ["--config", str(RECIPES / "configs" / f"{recipe}{suffix}.yaml")]
                + ["--model", "m", "--data", "d", "--output_dir", "o"],
                main.allowed,
            )
            assert stage.name in main.allowed and script.model == "m" and training.output_dir == "o"
