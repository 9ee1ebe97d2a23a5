"""The Talker DPO recipe data-parallel: two processes under torchrun (gloo on CPU, as `accelerate launch` on GPUs).
The main process builds the pairs first, the other loads them; both train on their share of each batch."""

import json
import os
import socket
import subprocess
import sys

from helpers.recipes import RECIPES


def test_talker_dpo_runs_data_parallel(tiny_model_dir, tiny_asr_dir, tmp_path):
    out = tmp_path / "ddp"
    argv = ["--model", str(tiny_model_dir), "--asr", str(tiny_asr_dir), "--prompts", "synthetic:4", "--use_peft"]
    argv += ["--num_candidates", "3", "--talker_max_new_tokens", "8", "--token2wav_steps", "2", "--lora_r", "4"]
    argv += ["--max_steps", "2", "--batch_size", "1", "--logging_steps", "1", "--output_dir", str(out)]
    argv += ["--log_level", "info"]  # the Trainer's batch-size line is info level (the default is warning)
    with socket.socket() as probe:  # a free port on the loopback for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = str(probe.getsockname()[1])
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1"]
    command += ["--master_port", port]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [*command, str(RECIPES / "talker_dpo.py"), *argv], env=env, capture_output=True, text=True, timeout=240
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert "Total train batch size (w. parallel, distributed & accumulation) = 2" in log  # 2 processes x 1
    metrics = json.loads(result.stdout[result.stdout.rindex("\n{\n") :])  # the last top-level JSON object
    assert result.stdout.count('"pairs"') == 1  # printed by the main process only
    assert metrics["steps"] == 2 and metrics["pairs"] >= 1
    assert (out / "final" / "adapter_model.safetensors").is_file()
