"""`StreamingWindow.plan`: the chunking chosen from stage speeds never lets a simulated player starve."""

import pytest

from omni_hf.token2wav.streaming import StreamingWindow


def simulate(window: StreamingWindow, per_block: float, dit_per_block: float, blocks: int, block_s: float = 0.24):
    """Seconds a real-time player waits after the first chunk, and the first chunk's time, for stages run in
    sequence (per chunk: its blocks' production, then the DiT over its window)."""
    clock, played_until, starved, first, start, index = 0.0, None, 0.0, None, 0, 0
    while start < blocks:
        size = min(window.chunk_size(index), blocks - start)
        solved = min(start + size + window.future_blocks, blocks) - max(0, start - window.past_blocks)
        clock += size * per_block + solved * dit_per_block
        if played_until is None:
            first, played_until = clock, clock
        else:
            starved += max(0.0, clock - played_until)
            played_until = max(played_until, clock)
        played_until += size * block_s
        start, index = start + size, index + 1
    return starved, first


@pytest.mark.parametrize("per_block, dit", [(0.03, 0.01), (0.08, 0.03), (0.12, 0.04), (0.15, 0.03)])
def test_planned_chunks_never_starve_and_start_early(per_block, dit):
    window = StreamingWindow.plan(per_block, dit)
    starved, first = simulate(window, per_block, dit, blocks=42)  # a 10 s reply
    assert starved == 0
    fixed_starved, fixed_first = simulate(StreamingWindow(), per_block, dit, blocks=42)
    assert first <= max(fixed_first, 0.0) * 4  # small first chunk when speeds allow
    if per_block + dit < 0.08:
        assert window.chunk_blocks[0] <= 2  # fast stages: audio starts after one or two blocks


def test_slow_stages_get_large_chunks_and_fixed_default_would_starve():
    window = StreamingWindow.plan(0.15, 0.04)
    assert window.chunk_blocks[0] > 2
    assert simulate(StreamingWindow(), 0.15, 0.04, 42)[0] > 0  # the fixed (2, 4, 8, ...) chunking starves here
    assert simulate(window, 0.15, 0.04, 42)[0] == 0


def test_from_stage_seconds_and_window_blocks():
    window = StreamingWindow()
    # 7 blocks: chunk [0, 2) solves [0, 3); chunk [2, 6) solves [0, 7); chunk [6, 7) solves [4, 7)
    assert window.window_blocks(2) == 2 and window.window_blocks(7) == 3 + 7 + 3
    planned = StreamingWindow.from_stage_seconds({"thinker": 0.1, "talker": 0.5, "dit": 0.6, "vocoder": 0.2}, 2.0)
    assert planned.chunk_blocks[0] >= 1
    with pytest.raises(ValueError, match="audio"):
        StreamingWindow.from_stage_seconds({"dit": 1.0}, 0.0)
    with pytest.raises(ValueError, match="safety"):
        StreamingWindow.plan(0.1, 0.1, safety=0)
