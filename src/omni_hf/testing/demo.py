"""`make demo`: build a tiny random omni_hf model and sample media offline, then chat with them through the CLI.

python -m omni_hf.testing.demo --out demo_assets
"""

import argparse
import time
from pathlib import Path

import torch

from .media import write_image, write_video, write_wav
from .tiny import reinit_, tiny_speakers, tiny_talker_config_dict, tiny_thinker_config_dict, tiny_token2wav_config_dict
from .tokenizer import build_tiny_processor

NOTICE = """\
NOTE: this model has tiny RANDOM weights, so its reply above is meaningless text and {reply} is noise, not
speech. Everything else is real: the media were decoded, featurised and encoded, the Thinker generated with TMRoPE
positions, the Talker turned its reply stream into speech codes, and the token2wav pipeline (DiT + RK4 flow
matching + BigVGAN) turned them into a 24 kHz waveform.
To chat with the real model (downloads ~22 GB), run for example:
  .venv/bin/omni-hf chat --model Qwen/Qwen2.5-Omni-7B --text "What do you hear and see?" \\
      --audio {audio} --image {image} --video {video} --use-audio-in-video --device cuda --dtype bfloat16 \\
      --speaker Chelsie --output reply.wav"""


def build_demo_model(path: Path, speech: bool = True) -> Path:
    """Save a tiny random model and its processor (tiny tokenizer) in our own layout.

    With `speech`, the full model (Thinker + Talker + token2wav pipeline + two random speakers), else the Thinker.
    """
    from .. import (
        OmniConfig,
        OmniForConditionalGeneration,
        OmniThinkerConfig,
        OmniThinkerForConditionalGeneration,
    )
    from ..omni.configuration_omni import translate_official_config
    from ..thinker.configuration_thinker import translate_official_thinker_config

    torch.manual_seed(0)
    if not speech:
        config = OmniThinkerConfig(**translate_official_thinker_config(tiny_thinker_config_dict()))
        reinit_(OmniThinkerForConditionalGeneration(config)).save_pretrained(path)
    else:
        official = {
            "model_type": "qwen2_5_omni",
            "thinker_config": tiny_thinker_config_dict(),
            "talker_config": tiny_talker_config_dict(),
            "token2wav_config": tiny_token2wav_config_dict(),
        }
        model = OmniForConditionalGeneration(OmniConfig(**translate_official_config(official)))
        reinit_(model.thinker)
        reinit_(model.talker, std=0.1)
        model.enable_talker()
        reinit_(model.token2wav.dit, std=0.05)
        reinit_(model.token2wav.vocoder, std=0.3)
        model.speakers = tiny_speakers(model.token2wav.dit.config.enc_emb_dim)
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
    prompts = [
        "Say hello.",
        "Count to five.",
        "Name a colour.",
        "Describe the sea.",
        "Tell a short joke.",
        "Greet me.",
    ]
    (out / "distill_prompts.txt").write_text("\n".join(prompts) + "\n")  # recipes/configs/token2wav_distill_tiny.yaml
    print(f"Built a tiny random model in {model_dir} and sample media {audio}, {image}, {video}.")
    reply_wav = str(out / "reply.wav")
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
        "--speaker",
        "Chelsie",
        "--output",
        reply_wav,
        "--max-speech-codes",
        "100",
    ]
    print("$ omni-hf " + " ".join(command))
    start = time.perf_counter()
    code = cli_main(command)
    if code:
        raise SystemExit(code)
    print(f"(answered in {time.perf_counter() - start:.2f} s on CPU)")
    streamed_wav = str(out / "reply_streamed.wav")
    command = [
        *command[: command.index("--output")],
        "--output",
        streamed_wav,
        *command[command.index("--output") + 2 :],
    ]
    command.append("--stream")
    print("\nThe same turn streamed: text is printed as it is generated and the WAV grows chunk by chunk.")
    print("$ omni-hf " + " ".join(command))
    code = cli_main(command)
    if code:
        raise SystemExit(code)
    print(NOTICE.format(audio=audio, image=image, video=video, reply=reply_wav))


if __name__ == "__main__":
    main()
