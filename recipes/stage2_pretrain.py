"""Stage 2: unfreeze everything and train on a multimodal mixture (image/video/audio/video-with-audio/text).

`python recipes/stage2_pretrain.py --config recipes/configs/stage2_pretrain_tiny.yaml`: tiny CPU run;
GPU launches, data formats and every option (each `TrainingArguments` field is a flag): recipes/README.md.

Samples are packed into `max_length` rows (each keeps its own TMRoPE ids; a block-diagonal mask separates them).
"""

from omni_hf.training.run import run_cli, stage_recipe

main = stage_recipe("stage2_pretrain", allowed=("stage2_pretrain",))

if __name__ == "__main__":
    run_cli(main)
