"""Stage 2: unfreeze everything and train on a multimodal mixture (image/video/audio/video-with-audio/text).

Samples are packed into `max_length` rows (each keeps its own TMRoPE ids; a block-diagonal mask separates them).
Data formats, configs and launch commands: recipes/README.md.

CPU smoke run (tiny random model, a few steps):

    python recipes/stage2_pretrain.py --config recipes/configs/stage2_pretrain_tiny.yaml

One GPU / several GPUs / several nodes (see recipes/accelerate_configs/):

    accelerate launch --config_file recipes/accelerate_configs/single_gpu.yaml recipes/stage2_pretrain.py \
        --config recipes/configs/stage2_pretrain.yaml --model ./omni-7b --data my_data.jsonl --output_dir out/stage2_pretrain
    accelerate launch --config_file recipes/accelerate_configs/deepspeed_zero3.yaml --num_machines 2 \
        --machine_rank $RANK --main_process_ip $MASTER --num_processes 16 recipes/stage2_pretrain.py --config ...
"""

import sys

from transformers.utils import logging

from omni_hf.training.run import recipe_main

STAGE = "stage2_pretrain"
ALLOWED_STAGES = ("stage2_pretrain",)


def main(argv=None) -> dict:
    return recipe_main(STAGE, ALLOWED_STAGES, argv)


if __name__ == "__main__":
    logging.set_verbosity_info()
    sys.exit(0 if main() else 1)
