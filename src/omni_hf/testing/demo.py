"""`make demo`: build a tiny random omni_hf model and sample media offline, then chat with them through the CLI.

python -m omni_hf.testing.demo --out demo_assets
"""

import argparse
import time
from pathlib import Path

import torch

from .media import write_image, write_video, write_wav
from .tiny import reinit_, tiny_thinker_config_dict
from .tokenizer import build_tiny_processor

NOTICE = """\
NOTE: this model has tiny RANDOM weights, so its reply above is meaningless text. Everything else is real:
the media were decoded, featurised and encoded, and the Thinker generated with TMRoPE positions.
To chat with the real model (downloads ~22 GB), run for example:
  .venv/bin/omni-hf chat --model Qwen/Qwen2.5-Omni-7B --text "What do you hear and see?" \\
      --audio {audio} --image {image} --video {video} --use-audio-in-video --device cuda --dtype bfloat16"""


def build_demo_model(path: Path) -> Path:
    """Save a tiny random Thinker and its processor (tiny tokenizer) in our own format."""
    from ..models import OmniThinkerConfig, OmniThinkerForConditionalGeneration
    from ..models.configuration_thinker import translate_official_thinker_config

    torch.manual_seed(0)
    config = OmniThinkerConfig(**translate_official_thinker_config(tiny_thinker_config_dict()))
    model = reinit_(OmniThinkerForConditionalGeneration(config))
    model.save_pretrained(path)
    build_tiny_processor().save_pretrained(path)
    return path


def main(argv: list[str] | None = None) -> None:
    from ..cli import main as cli_main

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo_assets")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = build_demo_model(out / "tiny-omni")
    audio = write_wav(out / "speech.wav", duration=3.0, sampling_rate=44100)
    image = write_image(out / "shapes.png")
    video = write_video(out / "clip.mp4", duration=3.0, with_audio=True)
    print(f"Built a tiny random model in {model_dir} and sample media {audio}, {image}, {video}.")
    command = [
        "chat",
        "--model",
        str(model_dir),
        "--text",
        "What do you hear and see?",
        "--audio",
        audio,
        "--image",
        image,
        "--video",
        video,
        "--use-audio-in-video",
        "--max-new-tokens",
        "16",
    ]
    print("$ omni-hf " + " ".join(command))
    start = time.perf_counter()
    code = cli_main(command)
    if code:
        raise SystemExit(code)
    print(f"(answered in {time.perf_counter() - start:.2f} s on CPU)")
    print(NOTICE.format(audio=audio, image=image, video=video))


if __name__ == "__main__":
    main()
