"""Building blocks shared by the Thinker, the Talker and the speech tokenizer: the base `PreTrainedModel`, the
TMRoPE-aware Qwen2 decoder, segment (block-wise / window) attention, TMRoPE ids, and the self-contained code set
written beside saved checkpoints for `trust_remote_code`."""
