"""Stage 1: train the audio/vision adapters, then the encoders, on audio-text and image-text pairs (LLM frozen).

Run it twice, as the paper does: `--stage stage1_adapters` (adapters only), then `--stage stage1_encoders` on the
adapters' output (`--model <adapters output_dir>`).
Data formats, configs and launch commands: recipes/README.md.

CPU smoke run (tiny random model, a few steps):

    python recipes/stage1_encoders.py --config recipes/configs/stage1_encoders_tiny.yaml

One GPU / several GPUs / several nodes (see recipes/accelerate_configs/):

    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml recipes/stage1_encoders.py \
        --config recipes/configs/stage1_encoders.yaml --model ./omni-7b --data my_data.jsonl --output_dir out/stage1_encoders
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml --num_machines 2 \
        --machine_rank $RANK --main_process_ip $MASTER --num_processes 16 recipes/stage1_encoders.py --config ...
"""

import sys

from transformers.utils import logging

from omni_hf.training.run import recipe_main

STAGE = "stage1_encoders"
ALLOWED_STAGES = ("stage1_adapters", "stage1_encoders")


def main(argv=None) -> dict:
    return recipe_main(STAGE, ALLOWED_STAGES, argv)


if __name__ == "__main__":
    logging.set_verbosity_info()
    sys.exit(0 if main() else 1)
