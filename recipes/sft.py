"""Instruction tuning on ChatML dialogues over text, audio, image, video and mixed inputs (assistant-only loss).

`python recipes/sft.py --config recipes/configs/sft_tiny.yaml`: tiny CPU run;
GPU launches, data formats and every option (each `TrainingArguments` field is a flag): recipes/README.md.

Rows: `{"messages": [...]}` conversations; only assistant turns (content + <|im_end|>) are labelled.
"""

from omni_hf.training.run import run_cli, stage_recipe

main = stage_recipe("sft", allowed=("sft",))

if __name__ == "__main__":
    run_cli(main)
