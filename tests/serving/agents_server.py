"""`omni-hf serve`'s app (`create_app` + its realtime route, as `omni-hf serve` builds them) on 127.0.0.1 for the
voice-agent framework tests, with a switchable forced reply: `script.text` set makes the tiny model write exactly
that text (a `<tool_call>` block for the function-calling tests); None lets it answer on its own (greedy)."""

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from conftest import GREEDY, LiveServer

SPEECH_CODE_LIMIT = 24  # serve's --max-speech-codes here: below the replies' own talker_max_new_tokens (30)
FORCED_CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


class ForcedReply(LogitsProcessor):
    """Forces the reply (the tokens after the last `<|im_start|>assistant\\n`) to be `text`, then `<|im_end|>`.
    `text` is kept on the class: generation options are copied on their way to the model. Without a text, the media
    placeholder tokens are suppressed: a random model's reply holding `<|VIDEO|>` makes the conversation's next turn
    fail (`OmniConversation` keeps the generated id; its TMRoPE layout then expects a video)."""

    forced: dict = {"text": None}

    @property
    def text(self):
        return ForcedReply.forced["text"]

    @text.setter
    def text(self, value):
        ForcedReply.forced["text"] = value

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.header = tokenizer("<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
        self.end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        self.placeholders = torch.tensor(tokenizer.convert_tokens_to_ids(["<|AUDIO|>", "<|IMAGE|>", "<|VIDEO|>"]))

    def __call__(self, input_ids, scores):
        if self.text is None:  # the random model's own reply, without media placeholders (see the report of #26)
            return scores.index_fill(-1, self.placeholders.to(scores.device), float("-inf"))
        ids = self.tokenizer(self.text, add_special_tokens=False)["input_ids"]
        forced = []
        for row in input_ids.tolist():
            start = max(i for i in range(len(row)) if row[i : i + len(self.header)] == self.header) + len(self.header)
            n = len(row) - start
            forced.append(ids[n] if n < len(ids) else self.end)
        out = torch.full_like(scores, float("-inf"))
        out[torch.arange(len(forced)), torch.tensor(forced)] = 0
        return out


@pytest.fixture(scope="module")
def agents_server(tiny_served):
    """(LiveServer, ForcedReply): the HTTP API and `/v1/realtime` of one app on one engine, with serve's limits."""
    from omni_hf.serving import create_app
    from omni_hf.serving.protocol import ServerLimits
    from omni_hf.serving.realtime import add_realtime_routes

    model, processor = tiny_served
    script = ForcedReply(processor.tokenizer)
    limits = ServerLimits(max_tokens=64, talker_max_new_tokens=SPEECH_CODE_LIMIT, timeout=120)
    app = create_app(model, processor, model_id="omni-tiny", limits=limits, max_active=4)
    # serve's own realtime route, registered again with greedy replies and the forced-reply switch
    app.router.routes[:] = [r for r in app.router.routes if getattr(r, "path", None) != "/v1/realtime"]
    kwargs = GREEDY | {"thinker_max_new_tokens": 64, "thinker_logits_processor": LogitsProcessorList([script])}
    add_realtime_routes(app, model, processor, model_name="omni-tiny", engine=app.state.omni.engine, limits=limits,
                        generation_kwargs=kwargs, seed=0)  # fmt: skip
    with LiveServer(app) as live:
        yield live, script
