"""Talker in-context stage: next speech-code prediction in dialogue context, the Thinker frozen.

Rows: `{"text", "codes"}` or `{"messages", "codes"}` (codes of the last, assistant, turn in `--speaker`'s voice).
Data formats, configs and launch commands: recipes/README.md.

CPU smoke run (tiny random model, a few steps):

    python recipes/talker_icl.py --config recipes/configs/talker_icl_tiny.yaml

One GPU / several GPUs / several nodes (see recipes/accelerate_configs/):

    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml recipes/talker_icl.py \
        --config recipes/configs/talker_icl.yaml --model ./omni-7b --data my_data.jsonl --output_dir out/talker_icl
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml --num_machines 2 \
        --machine_rank $RANK --main_process_ip $MASTER --num_processes 16 recipes/talker_icl.py --config ...
"""

import sys

from transformers.utils import logging

from omni_hf.training.run import recipe_main

STAGE = "talker_icl"
ALLOWED_STAGES = ("talker_icl",)


def main(argv=None) -> dict:
    return recipe_main(STAGE, ALLOWED_STAGES, argv)


if __name__ == "__main__":
    logging.set_verbosity_info()
    sys.exit(0 if main() else 1)
