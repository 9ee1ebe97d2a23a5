"""No solver state is shared between replies: the same pipeline (and the streams opened on it) decode several
replies at once, from several threads, each equal to decoding it alone."""

import threading

import torch

from omni_hf import OmniToken2WavPipeline
from omni_hf.token2wav.streaming import StreamingWindow


def _pipe(tiny_omni_dir):
    pipe = OmniToken2WavPipeline.from_pretrained(tiny_omni_dir / "token2wav")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _whole(pipe, speaker, codes, seed):
    noise = torch.Generator().manual_seed(seed)
    kwargs = dict(reference_mel=speaker.reference_mel, speaker_embedding=speaker.speaker_embedding, generator=noise)
    return pipe(codes, num_inference_steps=4, **kwargs).audios


def _streamed(pipe, speaker, codes, seed):
    noise = torch.Generator().manual_seed(seed)
    kwargs = dict(reference_mel=speaker.reference_mel, speaker_embedding=speaker.speaker_embedding, generator=noise)
    window = StreamingWindow(chunk_blocks=(2, 2))
    return torch.cat([chunk for chunk in pipe.stream(codes[0], num_inference_steps=4, window=window, **kwargs)], -1)


def _at_once(work, count):
    barrier, results, errors = threading.Barrier(count), [None] * count, []

    def run(i):
        try:
            barrier.wait(timeout=60)
            results[i] = work(i)
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    return results


def test_replies_decoded_at_once_equal_each_alone(tiny_omni_dir, tiny_omni):
    model, _ = tiny_omni
    speaker = model.speakers["Chelsie"]
    pipe = _pipe(tiny_omni_dir)
    codes = [torch.randint(0, 100, (1, 30), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    for decode in (_whole, _streamed):
        alone = [decode(pipe, speaker, codes[i], seed=i) for i in range(3)]
        for _ in range(2):
            together = _at_once(lambda i, decode=decode: decode(pipe, speaker, codes[i], seed=i), 3)
            for got, expected in zip(together, alone):
                torch.testing.assert_close(got, expected, rtol=0, atol=0)
