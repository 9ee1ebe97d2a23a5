"""Multi-turn chunked prefill (`OmniConversation`): turn one equals `OmniSession`, turn two equals a one-shot prompt
with the whole conversation (the first reply's own tokens included), and a cut reply stays in the history."""

import numpy as np
import pytest
import torch

from omni_hf.omni import AudioChunk, OmniSession
from omni_hf.omni.conversation import OmniConversation

GREEDY = dict(thinker_max_new_tokens=5, thinker_do_sample=False, talker_do_sample=False, talker_max_new_tokens=30)


def _feed(target, wave, packet=1600):
    for i in range(0, wave.size, packet):
        target.append_audio(wave[i : i + packet])


def _audio(events):
    return np.concatenate([e.audio for e in events if isinstance(e, AudioChunk)])


def test_first_turn_equals_omni_session(tiny_omni, question_16k):
    model, processor = tiny_omni
    session = OmniSession(model, processor)
    _feed(session, question_16k)
    prefilled = session.cache.get_seq_length()
    expected = list(session.stream("", generator=torch.Generator().manual_seed(0), **GREEDY))
    conversation = OmniConversation(model, processor)
    conversation.begin_audio()
    _feed(conversation, question_16k)
    assert conversation.cache.get_seq_length() == prefilled > 50  # chunks prefilled while recorded
    conversation.end_audio()
    got = list(conversation.stream(generator=torch.Generator().manual_seed(0), **GREEDY))
    assert got[-1].token_ids == expected[-1].token_ids and len(got[-1].token_ids) == 5
    assert got[-1].speech_code_ids == expected[-1].speech_code_ids and len(got[-1].speech_code_ids) == 30
    assert np.array_equal(_audio(got), _audio(expected))
    # the reply's tokens (all but the last, which starts the next prefill) are in the cache
    assert conversation.cache.get_seq_length() == conversation.input_ids.shape[1]
    assert conversation.input_ids[0, -4:].tolist() == got[-1].token_ids[:4]


def test_second_turn_equals_one_shot_conversation(tiny_omni, question_16k, speech):
    model, processor = tiny_omni
    conversation = OmniConversation(model, processor)
    conversation.begin_audio()
    _feed(conversation, question_16k)
    conversation.end_audio()
    first = list(conversation.stream(**GREEDY))[-1].token_ids
    second_question = speech("And tomorrow?", 16000)
    conversation.begin_audio()
    _feed(conversation, second_question)
    conversation.end_audio()
    got = list(conversation.stream(generator=torch.Generator().manual_seed(1), **GREEDY))

    tokenizer = processor.tokenizer

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    turn = [{"role": "user", "content": [{"type": "audio", "audio": question_16k, "sampling_rate": 16000}]}]
    both = turn + [{"role": "user", "content": [{"type": "audio", "audio": second_question, "sampling_rate": 16000}]}]
    kw = dict(tokenize=True, return_dict=True, return_tensors="pt")
    one = processor.apply_chat_template(turn, add_generation_prompt=True, **kw)["input_ids"][0].tolist()
    closed = processor.apply_chat_template(turn, add_generation_prompt=False, **kw)["input_ids"][0].tolist()
    full = processor.apply_chat_template(both, add_generation_prompt=True, **kw)
    expected_ids = one + first + ids("<|im_end|>\n") + full["input_ids"][0].tolist()[len(closed) :]
    clips = conversation.clip_features
    frames = max(c.shape[1] for c in clips)
    features = torch.zeros(2, clips[0].shape[0], frames)
    mask = torch.zeros(2, frames, dtype=torch.long)
    for i, clip in enumerate(clips):
        features[i, :, : clip.shape[1]] = torch.from_numpy(clip)
        mask[i, : clip.shape[1]] = 1
    expected = list(
        model.stream(
            input_ids=torch.tensor([expected_ids]),
            input_features=features,
            feature_attention_mask=mask,
            generator=torch.Generator().manual_seed(1),
            **GREEDY,
        )
    )
    assert got[-1].token_ids == expected[-1].token_ids
    assert got[-1].speech_code_ids == expected[-1].speech_code_ids and len(got[-1].speech_code_ids) == 30
    assert np.allclose(_audio(got), _audio(expected), atol=1e-4)


def test_cut_reply_stays_in_history_and_clear_frees_the_buffer(tiny_omni, question_16k):
    model, processor = tiny_omni
    conversation = OmniConversation(model, processor)
    conversation.add_text("Hello there")
    events = conversation.stream(return_audio=False, thinker_max_new_tokens=8, thinker_do_sample=False)
    kept = [next(events).token_ids[0], next(events).token_ids[0]]
    events.close()  # barge-in after two tokens
    assert conversation.input_ids[0, -1].item() == kept[0] and conversation.pending[0] == kept[1]
    im_end = processor.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert conversation.pending[1] == im_end or kept[1] == im_end
    length = conversation.cache.get_seq_length()
    conversation.begin_audio()
    _feed(conversation, question_16k)
    assert conversation.cache.get_seq_length() > length + 50
    conversation.cancel_audio()  # input_audio_buffer.clear
    assert conversation.cache.get_seq_length() == length and conversation.pending[0] == kept[1]
    reply = list(conversation.stream(return_audio=False, thinker_max_new_tokens=3, thinker_do_sample=False))
    assert len(reply[-1].token_ids) == 3
    with pytest.raises(RuntimeError, match="begin_audio"):
        conversation.append_audio(question_16k)
    conversation.close()
    assert conversation.cache is None


def test_typed_turn_with_an_image_equals_one_shot(tiny_omni):
    from omni_hf.testing.media import make_image

    model, processor = tiny_omni
    image = make_image(112, 84)
    conversation = OmniConversation(model, processor)
    conversation.add_text("What is in this picture?", images=[image])
    got = list(conversation.stream(generator=torch.Generator().manual_seed(2), **GREEDY))
    turn = [
        {
            "role": "user",
            "content": [{"type": "image", "image": image}, {"type": "text", "text": "What is in this picture?"}],
        }
    ]
    one = processor.apply_chat_template(
        turn, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    assert torch.equal(conversation.input_ids[:, : one["input_ids"].shape[1]], one["input_ids"])
    expected = list(model.stream(**one, generator=torch.Generator().manual_seed(2), **GREEDY))
    assert got[-1].token_ids == expected[-1].token_ids
    assert got[-1].speech_code_ids == expected[-1].speech_code_ids and len(got[-1].speech_code_ids) == 30
    assert np.array_equal(_audio(got), _audio(expected))
