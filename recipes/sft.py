"""Instruction tuning on ChatML dialogues over text, audio, image, video and mixed inputs (assistant-only loss).

Rows: `{"messages": [...]}` conversations; only assistant turns (content + <|im_end|>) are labelled.
Data formats, configs and launch commands: recipes/README.md.

CPU smoke run (tiny random model, a few steps):

    python recipes/sft.py --config recipes/configs/sft_tiny.yaml

One GPU / several GPUs / several nodes (see recipes/accelerate_configs/):

    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml recipes/sft.py \
        --config recipes/configs/sft.yaml --model ./omni-7b --data my_data.jsonl --output_dir out/sft
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml --num_machines 2 \
        --machine_rank $RANK --main_process_ip $MASTER --num_processes 16 recipes/sft.py --config ...
"""

import sys

from transformers.utils import logging

from omni_hf.training.run import recipe_main

STAGE = "sft"
ALLOWED_STAGES = ("sft",)


def main(argv=None) -> dict:
    return recipe_main(STAGE, ALLOWED_STAGES, argv)


if __name__ == "__main__":
    logging.set_verbosity_info()
    sys.exit(0 if main() else 1)
