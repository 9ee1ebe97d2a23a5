"""Talker in-context stage: next speech-code prediction in dialogue context, the Thinker frozen.

`python recipes/talker_icl.py --config recipes/configs/talker_icl_tiny.yaml`: tiny CPU run;
GPU launches, data formats and every option (each `TrainingArguments` field is a flag): recipes/README.md.

Rows: `{"text", "codes"}` or `{"messages", "codes"}` (codes of the last, assistant, turn in `--speaker`'s voice).
"""

from omni_hf.training.run import run_cli, stage_recipe

main = stage_recipe("talker_icl", allowed=("talker_icl",))

if __name__ == "__main__":
    run_cli(main)
