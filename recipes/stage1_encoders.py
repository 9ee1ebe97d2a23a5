"""Stage 1: train the audio/vision adapters, then the encoders, on audio-text and image-text pairs (LLM frozen).

`python recipes/stage1_encoders.py --config recipes/configs/stage1_encoders_tiny.yaml`: tiny CPU run;
GPU launches, data formats and every option (each `TrainingArguments` field is a flag): recipes/README.md.

Run it twice, as the paper does: `--stage stage1_adapters` (adapters only), then `--stage stage1_encoders` on the
adapters' output (`--model <adapters output_dir>`).
"""

from omni_hf.training.run import run_cli, stage_recipe

main = stage_recipe("stage1_encoders", allowed=("stage1_adapters", "stage1_encoders"))

if __name__ == "__main__":
    run_cli(main)
