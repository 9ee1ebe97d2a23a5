"""Recipes at default verbosity: no hundreds of info lines (configs, file paths) and no deprecation warnings from
omni_hf's own code paths (`gradient_checkpointing*` in transformers 5.24, PEFT reading `is_gradient_checkpointing`)."""

import os
import warnings

import pytest
from transformers.utils import logging

from omni_hf.training.run import parse_args, run_cli


def test_run_cli_keeps_the_default_verbosity(monkeypatch):
    monkeypatch.delenv("TRANSFORMERS_VERBOSITY", raising=False)
    before = logging.get_verbosity()
    logging.set_verbosity_warning()
    try:
        with pytest.raises(SystemExit) as done:
            run_cli(lambda: {"steps": 6})
        assert done.value.code == 0
        assert logging.get_verbosity() == logging.WARNING  # was forced to INFO: 592 stderr lines for 6 steps
        monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "info")  # still there when asked for
        with pytest.raises(SystemExit):
            run_cli(lambda: {"steps": 6})
        assert logging.get_verbosity() == logging.INFO
    finally:
        logging.set_verbosity(before)


def test_stage_and_dpo_options_raise_no_deprecation_warning(tmp_path):
    argv = ["--model", "m", "--data", "d", "--output_dir", str(tmp_path / "o"), "--gradient_checkpointing", "true"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a FutureWarning here fails the test
        _, _, training = parse_args("sft", argv, ("sft",))
        assert training.activation_checkpointing is True and training.gradient_checkpointing is True
        assert training.activation_checkpointing_kwargs == {"use_reentrant": False}
        _, _, training = parse_args("sft", argv[:-2], ("sft",))
        assert training.activation_checkpointing is False
    pytest.importorskip("trl")
    from omni_hf.training.dpo import TalkerDPOConfig

    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = TalkerDPOConfig(output_dir=str(tmp_path / "dpo"), bf16=False, report_to=[])
    assert config.activation_checkpointing is False and config.gradient_checkpointing is False


def test_voice_adapter_add_raises_no_future_warning(tiny_omni_dir):
    pytest.importorskip("peft")
    from omni_hf import OmniForConditionalGeneration

    model = OmniForConditionalGeneration.from_pretrained(tiny_omni_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PEFT reads `is_gradient_checkpointing` on every PeftModel(...)
        model.voice_adapters.add("quiet")
    assert model.voice_adapters.names == ["quiet"]
