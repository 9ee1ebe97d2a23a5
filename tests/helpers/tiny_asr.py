"""A tiny random wav2vec2-CTC "ASR" checkpoint for offline CPU runs of the Talker DPO recipe and its tests.

python tests/helpers/tiny_asr.py demo_assets/tiny-asr     # then recipes/configs/talker_dpo_tiny.yaml runs
"""

import sys
from pathlib import Path


def build_tiny_ctc_asr(path: str | Path, seed: int = 0) -> Path:
    """Save a tiny random wav2vec2-CTC ASR checkpoint (character vocabulary) for offline CPU runs and tests.

    Its transcripts are deterministic gibberish: enough to exercise the pipeline route, not to recognise speech.
    """
    import json

    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    letters = list("abcdefghijklmnopqrstuvwxyz'")
    vocab = {"<pad>": 0, "<unk>": 1, "|": 2, **{ch: i + 3 for i, ch in enumerate(letters)}}
    (path / "vocab.json").write_text(json.dumps(vocab))
    tokenizer = Wav2Vec2CTCTokenizer(str(path / "vocab.json"), pad_token="<pad>", unk_token="<unk>")
    extractor = Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=False)
    config = Wav2Vec2Config(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        pad_token_id=0,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    torch.manual_seed(seed)
    model = Wav2Vec2ForCTC(config).eval()
    with torch.no_grad():
        model.lm_head.weight.normal_(0, 2.0)  # varied argmax letters instead of one blank everywhere
        model.lm_head.bias[vocab["|"]] += 22.0  # and frequent word breaks, so transcripts differ in word counts
    model.save_pretrained(path)
    Wav2Vec2Processor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(path)
    return path


if __name__ == "__main__":
    print(build_tiny_ctc_asr(sys.argv[1] if len(sys.argv) > 1 else "demo_assets/tiny-asr"))
