"""Stage 3: long-context training up to 32,768 tokens on long audio, video and text.

`python recipes/stage3_long_context.py --config recipes/configs/stage3_long_context_tiny.yaml`: tiny CPU run;
GPU launches, data formats and every option (each `TrainingArguments` field is a flag): recipes/README.md.

Use gradient checkpointing and FSDP or ZeRO-3 for 32k sequences on real checkpoints.
"""

from omni_hf.training.run import run_cli, stage_recipe

main = stage_recipe("stage3_long_context", allowed=("stage3_long_context",))

if __name__ == "__main__":
    run_cli(main)
