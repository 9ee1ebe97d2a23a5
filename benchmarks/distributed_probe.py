"""Check what a recipe really ran under `accelerate launch`: after training, each process prints one `PROBE {...}`
line with its rank, world size, backend and whether the Trainer wrapped the model with FSDP, DeepSpeed or DDP.

accelerate silently falls back to DDP when FSDP is asked for on CPU (accelerate 1.15 enables FSDP only for
accelerator devices), so "it ran with the FSDP config" is not proof of sharding; this is.

    accelerate launch --config_file recipes/accelerate_configs/fsdp.yaml --num_processes 2 \
        benchmarks/distributed_probe.py sft --config recipes/configs/sft_tiny.yaml
    accelerate launch --config_file recipes/accelerate_configs/talker_dpo_fsdp.yaml --num_processes 2 \
        benchmarks/distributed_probe.py talker_dpo --config recipes/configs/talker_dpo_tiny.yaml --use_peft false
"""

import json
import sys

import transformers

from recipe_loader import load_recipe

_train = transformers.Trainer.train


def _probed_train(self, *args, **kwargs):
    import torch.distributed as dist

    output = _train(self, *args, **kwargs)
    ready = dist.is_available() and dist.is_initialized()
    report = {
        "rank": dist.get_rank() if ready else 0,
        "world": dist.get_world_size() if ready else 1,
        "backend": dist.get_backend() if ready else None,
        "fsdp": bool(self.is_fsdp_enabled),
        "deepspeed": bool(self.is_deepspeed_enabled),
        "wrapper": type(self.model_wrapped).__name__,
        "fsdp_modules": sum(1 for m in self.model_wrapped.modules() if "FSDP" in type(m).__name__),
    }
    print("PROBE " + json.dumps(report), flush=True)
    return output


if __name__ == "__main__":
    transformers.Trainer.train = _probed_train
    sys.exit(0 if load_recipe(sys.argv[1]).main(sys.argv[2:]) else 1)
