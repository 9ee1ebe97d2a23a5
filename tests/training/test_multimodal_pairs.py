"""Preference pairs from multimodal conversations (audio + image given as files): candidates are sampled with the
media read by the Thinker exactly as in generation, the conversation is stored with the pair, and DPO training re-reads
the media through the processor (and refuses to guess without it)."""

import json

import pytest
import torch

from omni_hf.omni import StreamStats
from omni_hf.testing.media import write_image, write_wav
from omni_hf.training.dpo import TalkerDPOConfig, TalkerDPOTrainer
from omni_hf.training.preference_pairs import build_preference_pairs, prepare_prompt, sample_candidates
from omni_hf.training.rewards import CandidateScore


class LowCodes:
    """Stand-in ranker: prefer candidates with more codes below 4096 (no audio needed)."""

    needs_audio = False

    def __call__(self, text, codes, waveform, sampling_rate):
        return CandidateScore(sum(c >= 4096 for c in codes) / max(len(codes), 1), 0.0)


@pytest.fixture(scope="module")
def conversations(tmp_path_factory):
    folder = tmp_path_factory.mktemp("media")
    items = []
    for i in range(3):
        audio = write_wav(folder / f"q{i}.wav", duration=1.0 + 0.2 * i, sampling_rate=22050, seed=i)
        image = write_image(folder / f"p{i}.png", width=112, height=84, seed=i)
        content = [{"type": "audio", "audio": audio}, {"type": "image", "image": image}]
        content.append({"type": "text", "text": "What do you hear and see?"})
        items.append({"conversation": [{"role": "user", "content": content}], "reply": f"a picture number {i}"})
    return items


def test_candidates_read_the_media_as_generation_does(model_and_processor, conversations):
    model, processor = model_and_processor
    item = conversations[0]
    row = prepare_prompt(model, processor, item)
    assert row["media"]["pixel_values"] is not None and row["media"]["input_features"] is not None
    assert json.loads(row["prompt"]) == item["conversation"]  # file paths, stored with the pair
    inputs = dict(
        processor.apply_chat_template(
            item["conversation"], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
    )
    assert inputs["input_ids"][0].tolist() == row["thinker_prompt_ids"]
    greedy = dict(thinker_do_sample=False, thinker_max_new_tokens=5, talker_do_sample=False, talker_max_new_tokens=10)
    events = list(model.stream(**inputs, speaker="Chelsie", return_audio=True, **greedy))
    stats = [e for e in events if isinstance(e, StreamStats)][0]
    eos = model.thinker.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos]
    ends = [i for i, t in enumerate(stats.token_ids) if t in eos]
    reply = stats.token_ids[: ends[0]] if ends else stats.token_ids[:-1]  # the last token is never fed back
    (codes,) = sample_candidates(
        model, row["thinker_prompt_ids"], reply, 1, max_new_tokens=10, media=row["media"], do_sample=False
    )
    assert codes.tolist() == stats.speech_code_ids[: len(codes)] and len(codes) >= 3


def test_multimodal_pairs_train_with_the_processor(model_and_processor, new_model, conversations, tmp_path):
    model, processor = model_and_processor
    pairs = build_preference_pairs(
        model, processor, conversations, tmp_path / "pairs", scorer=LowCodes(), num_candidates=4,
        talker_max_new_tokens=8,
    )  # fmt: skip
    assert len(pairs) >= 1 and all("image" in row["prompt"] for row in pairs)
    policy = new_model()
    config = dict(output_dir=str(tmp_path / "run"), max_steps=2, per_device_train_batch_size=2, learning_rate=2e-3)
    args = TalkerDPOConfig(**config, logging_steps=1, report_to=[], save_strategy="no")
    with pytest.raises(ValueError, match="give the trainer the processor"):
        trainer = TalkerDPOTrainer(policy, args=args, train_dataset=pairs)
        trainer.data_collator([trainer.train_dataset[0]])
    trainer = TalkerDPOTrainer(policy, args=args, train_dataset=pairs, processor=processor)
    batch = trainer.data_collator([trainer.train_dataset[0]])
    with_media = batch["inputs_embeds"]
    # the conditioning differs from the same ids without their media: the pictures and sounds are really read
    stripped = [{**trainer.train_dataset[0], "prompt": json.dumps([{"role": "user", "content": "hi"}])}]
    with pytest.raises(ValueError, match="more audio placeholders"):
        trainer.data_collator(stripped)
    before = {k: v.clone() for k, v in policy.talker.state_dict().items()}
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    assert any(not torch.equal(v, before[k]) for k, v in policy.talker.state_dict().items())
    assert with_media.shape[0] == 2 and torch.isfinite(with_media).all()
