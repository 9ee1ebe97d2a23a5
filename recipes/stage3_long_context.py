"""Stage 3: long-context training up to 32,768 tokens on long audio, video and text.

Use gradient checkpointing and FSDP or ZeRO-3 for 32k sequences on real checkpoints.
Data formats, configs and launch commands: recipes/README.md.

CPU smoke run (tiny random model, a few steps):

    python recipes/stage3_long_context.py --config recipes/configs/stage3_long_context_tiny.yaml

One GPU / several GPUs / several nodes (see recipes/accelerate_configs/):

    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml recipes/stage3_long_context.py \
        --config recipes/configs/stage3_long_context.yaml --model ./omni-7b --data my_data.jsonl --output_dir out/stage3_long_context
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml --num_machines 2 \
        --machine_rank $RANK --main_process_ip $MASTER --num_processes 16 recipes/stage3_long_context.py --config ...
"""

import sys

from transformers.utils import logging

from omni_hf.training.run import recipe_main

STAGE = "stage3_long_context"
ALLOWED_STAGES = ("stage3_long_context",)


def main(argv=None) -> dict:
    return recipe_main(STAGE, ALLOWED_STAGES, argv)


if __name__ == "__main__":
    logging.set_verbosity_info()
    sys.exit(0 if main() else 1)
