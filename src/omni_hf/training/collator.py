"""Thinker training batches: ChatML encoding with assistant-only labels, packing, and padding of media tensors.

An *encoded example* is a dict of tensors for one sample: `input_ids`, `labels` `(T,)`, `position_ids` `(3, T)`
(TMRoPE, from `OmniProcessor`), and the sample's media tensors (`input_features` `(clips, 128, frames)`,
`feature_attention_mask` `(clips, frames)`, `pixel_values` `(patches, 1176)`, `image_grid_thw` `(images, 3)`,
`pixel_values_videos`, `video_grid_thw`, `video_second_per_grid`). `OmniThinkerCollator` pads examples into a batch
the Thinker's `forward` takes; packed examples also carry `packed_sequence_ids` `(T,)` (see `pack_examples`).

Example:

```python
>>> collator = OmniThinkerCollator(processor)
>>> example = encode_conversation(processor, [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
>>> batch = collator([example, example])   # input_ids, attention_mask, labels (B, T); position_ids (3, B, T)
```
"""

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
MEDIA_KEYS = ("pixel_values", "image_grid_thw", "pixel_values_videos", "video_grid_thw", "video_second_per_grid")


def assistant_label_mask(input_ids: torch.Tensor, header_ids: list[int], end_id: int) -> torch.Tensor:
    """`(T,)` bool: True on assistant turns' content and their closing `<|im_end|>`, False elsewhere.

    A turn starts after the token sequence `header_ids` (`<|im_start|>assistant\\n`) and ends at `end_id` included;
    a turn cut off (no `end_id`) is labelled to the end.
    """
    ids = input_ids.tolist()
    mask = torch.zeros(len(ids), dtype=torch.bool)
    n, i = len(header_ids), 0
    while i <= len(ids) - n:
        if ids[i : i + n] != header_ids:
            i += 1
            continue
        start = i = i + n
        while i < len(ids) and ids[i] != end_id:
            i += 1
        mask[start : min(i + 1, len(ids))] = True
        i += 1
    return mask


def assistant_header_ids(processor) -> list[int]:
    """Token ids of the assistant header `<|im_start|>assistant\\n` for this tokenizer."""
    return processor.tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]


def encode_conversation(processor, messages: list[dict], use_audio_in_video: bool = False) -> dict[str, torch.Tensor]:
    """One ChatML conversation (with media blocks) → an encoded example with assistant-only `labels`.

    Media are decoded and featurised by `OmniProcessor` (placeholders expanded, video+audio interleaved, TMRoPE ids).
    """
    if not any(m.get("role") == "assistant" for m in messages):
        raise ValueError("The conversation has no assistant turn: nothing to learn from (labels would all be -100).")
    out = processor.apply_chat_template(
        messages,
        tokenize=True,
        return_dict=True,
        return_tensors="pt",
        use_audio_in_video=use_audio_in_video,
        processor_kwargs={"return_position_ids": True, "padding": False},
    )
    input_ids = out["input_ids"][0]
    end_id = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    mask = assistant_label_mask(input_ids, assistant_header_ids(processor), end_id)
    example = {
        "input_ids": input_ids,
        "labels": torch.where(mask, input_ids, IGNORE_INDEX),
        "position_ids": out["position_ids"][:, 0],
    }
    for key in ("input_features", "feature_attention_mask", *MEDIA_KEYS):
        if key in out:
            example[key] = out[key]
    return example


def encode_text(processor, text: str) -> dict[str, torch.Tensor]:
    """A plain text document (pre-training stages) → an encoded example labelled on every token, ending with eos."""
    tokenizer = processor.tokenizer
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    input_ids = torch.tensor(ids, dtype=torch.long)
    return {
        "input_ids": input_ids,
        "labels": input_ids.clone(),
        "position_ids": torch.arange(len(ids)).expand(3, -1).clone(),
    }


def truncate_example(example: dict[str, torch.Tensor], max_length: int, media_token_ids: list[int]) -> dict | None:
    """Cut an example to `max_length` tokens; None when the cut would split or drop a media item (media tokens
    beyond `max_length`), because its features could no longer match its placeholders."""
    ids = example["input_ids"]
    if len(ids) <= max_length:
        return example
    if torch.isin(ids[max_length:], torch.tensor(media_token_ids)).any():
        return None
    cut = dict(example)
    cut["input_ids"], cut["labels"] = ids[:max_length], example["labels"][:max_length]
    cut["position_ids"] = example["position_ids"][:, :max_length]
    return cut


def pack_examples(examples: list[dict[str, torch.Tensor]], max_length: int) -> list[dict[str, torch.Tensor]]:
    """Pack consecutive examples into rows of at most `max_length` tokens (greedy, in order).

    Each sample keeps its own TMRoPE ids (restarting at 0) and gets its index in `packed_sequence_ids`; the trainer
    turns those into a block-diagonal causal mask, so samples never attend to each other. The first label of every
    sample is masked (it would be predicted from the previous sample). Media tensors are concatenated in order,
    which is the order of their placeholders.
    """
    packs, current, length = [], [], 0
    for example in examples:
        n = len(example["input_ids"])
        if current and length + n > max_length:
            packs.append(_concat(current))
            current, length = [], 0
        current.append(example)
        length += n
    if current:
        packs.append(_concat(current))
    return packs


def _concat(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    labels = []
    for e in examples:
        first_masked = e["labels"].clone()
        first_masked[0] = IGNORE_INDEX
        labels.append(first_masked)
    packed = {
        "input_ids": torch.cat([e["input_ids"] for e in examples]),
        "labels": torch.cat(labels),
        "position_ids": torch.cat([e["position_ids"] for e in examples], dim=1),
        "packed_sequence_ids": torch.cat(
            [torch.full((len(e["input_ids"]),), i, dtype=torch.long) for i, e in enumerate(examples)]
        ),
    }
    packed.update(_concat_media(examples))
    return packed


def _concat_media(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Media tensors of several examples in one batch; audio features right-padded to the longest clip."""
    out = {}
    audio = [e for e in examples if "input_features" in e]
    if audio:
        frames = max(e["input_features"].shape[-1] for e in audio)
        out["input_features"] = torch.cat(
            [F.pad(e["input_features"], (0, frames - e["input_features"].shape[-1])) for e in audio]
        )
        out["feature_attention_mask"] = torch.cat(
            [F.pad(e["feature_attention_mask"], (0, frames - e["feature_attention_mask"].shape[-1])) for e in audio]
        )
    for key in MEDIA_KEYS:
        parts = [e[key] for e in examples if key in e]
        if parts:
            out[key] = torch.cat(parts)
    return out


class OmniThinkerCollator:
    """Right-pads encoded (or packed) examples into a Thinker batch.

    Returns `input_ids`, `attention_mask`, `labels` (padding: -100) `(B, T)`, `position_ids` `(3, B, T)`, the
    batch's media tensors, and `packed_sequence_ids` `(B, T)` (padding: -1) when examples were packed.

    Args:
        pad_token_id: the tokenizer's pad id.
        pad_to_multiple_of: round `T` up (tensor-core friendly shapes on GPU).
    """

    def __init__(self, pad_token_id: int, pad_to_multiple_of: int | None = None):
        if pad_token_id is None:
            raise ValueError("OmniThinkerCollator needs a pad token id (the tokenizer has none).")
        self.pad_token_id = pad_token_id
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        if not examples:
            raise ValueError("OmniThinkerCollator got an empty list of examples.")
        width = max(len(e["input_ids"]) for e in examples)
        if self.pad_to_multiple_of:
            width = -(-width // self.pad_to_multiple_of) * self.pad_to_multiple_of

        def pad(key, value):
            return torch.stack([F.pad(e[key], (0, width - e[key].shape[-1]), value=value) for e in examples], dim=-2)

        batch = {
            "input_ids": pad("input_ids", self.pad_token_id),
            "attention_mask": torch.stack(
                [F.pad(torch.ones_like(e["input_ids"]), (0, width - len(e["input_ids"]))) for e in examples]
            ),
            "labels": pad("labels", IGNORE_INDEX),
            "position_ids": pad("position_ids", 0),
        }
        if any("packed_sequence_ids" in e for e in examples):
            batch["packed_sequence_ids"] = pad("packed_sequence_ids", -1)
        batch.update(_concat_media(examples))
        return batch


__all__ = [
    "IGNORE_INDEX",
    "OmniThinkerCollator",
    "assistant_label_mask",
    "encode_conversation",
    "encode_text",
    "pack_examples",
    "truncate_example",
]
