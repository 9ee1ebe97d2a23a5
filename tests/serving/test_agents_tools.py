"""Function calling: the Qwen2.5 tool prompt and `<tool_call>` parsing (`omni_hf.serving.tools`), and `tools` /
`tool_calls` on `/v1/chat/completions` (non-streamed and streamed) with the `openai` client, the tiny model forced to
write a `<tool_call>` block (a Thinker logits processor added to the server's decoders)."""

import json

import pytest
from agents_server import FORCED_CALL, ForcedReply, agents_server  # noqa: F401 - the fixture

from omni_hf.serving.tools import ToolCallParser, parse_tool_calls, render_tool_call, tools_system_prompt

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "The weather in a city.",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]  # fmt: skip


def test_tool_prompt_is_qwen25s():
    prompt = tools_system_prompt("You are Qwen.", TOOLS)
    assert prompt == (
        "You are Qwen.\n\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        + json.dumps(TOOLS[0])
        + "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
        "</tool_call>"
    )
    assert tools_system_prompt("You are Qwen.", TOOLS, "none") == "You are Qwen."
    assert tools_system_prompt("S", TOOLS, "required").endswith("You must call one of the functions above.")
    assert render_tool_call("f", '{"a": 1}') == '<tool_call>\n{"name": "f", "arguments": {"a": 1}}\n</tool_call>'


def test_streamed_tool_call_parsing_splits_text_and_calls():
    text = 'Let me check. <tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call> <tool'
    parser = ToolCallParser()
    shown = "".join(parser.feed(text[i : i + 3]) for i in range(0, len(text), 3)) + parser.finish()
    assert shown == "Let me check.  <tool"  # an unfinished tag is text
    assert [(c["name"], json.loads(c["arguments"])) for c in parser.calls] == [("get_weather", {"city": "Paris"})]
    assert parse_tool_calls("<tool_call>not json</tool_call>") == ("<tool_call>not json</tool_call>", [])


@pytest.fixture
def forced_thinker(agents_server, tiny_served, monkeypatch):  # noqa: F811
    """Every Thinker decoder of the server gets the forced-reply processor (the realtime route has it already)."""
    from omni_hf.common.step_decoder import StepDecoder

    model, processor = tiny_served
    forced = ForcedReply(processor.tokenizer)
    capture = StepDecoder._capture.__func__

    def with_forced(cls, decoder_model, input_ids, logits_processor, *args, **kwargs):
        if decoder_model is model.thinker:
            logits_processor.append(forced)
        return capture(cls, decoder_model, input_ids, logits_processor, *args, **kwargs)

    monkeypatch.setattr(StepDecoder, "_capture", classmethod(with_forced))
    forced.text = FORCED_CALL
    yield agents_server[0]
    forced.text = None


def test_chat_completions_tool_calls(forced_thinker):
    from openai import OpenAI

    client = OpenAI(base_url=f"{forced_thinker.url}/v1", api_key="-", max_retries=0)
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    reply = client.chat.completions.create(model="omni-tiny", messages=messages, tools=TOOLS, max_tokens=64)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"} and call.id.startswith("call_")

    chunks = list(client.chat.completions.create(model="omni-tiny", messages=messages, tools=TOOLS, max_tokens=64,
                                                 stream=True))  # fmt: skip
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.content or "" for d in deltas) == ""  # the block is not shown as content
    (streamed,) = [t for d in deltas for t in d.tool_calls or []]
    assert streamed.function.name == "get_weather" and json.loads(streamed.function.arguments) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"

    # the call and its output go back: rendered as Qwen2.5's <tool_call> / <tool_response> turns
    history = messages + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"weather": "sunny"}'},
    ]
    again = client.chat.completions.create(model="omni-tiny", messages=history, tools=TOOLS, max_tokens=64)
    assert again.choices[0].finish_reason == "tool_calls"  # still forced; the request with the history is served
    assert again.usage.prompt_tokens > reply.usage.prompt_tokens + 20
    # without tools the same forced text is plain content
    plain = client.chat.completions.create(model="omni-tiny", messages=messages, max_tokens=64)
    assert plain.choices[0].message.content == FORCED_CALL and not plain.choices[0].message.tool_calls


def test_tool_errors_name_the_field(agents_server):  # noqa: F811
    import httpx

    live, _ = agents_server
    body = {"model": "omni-tiny", "messages": [{"role": "user", "content": "hi"}], "tools": [{"type": "function"}]}
    answer = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 400 and "tools[0]" in answer.json()["error"]["message"]
    body["tools"], body["tool_choice"] = TOOLS, {"type": "function", "function": {"name": "nope"}}
    answer = httpx.post(f"{live.url}/v1/chat/completions", json=body, timeout=60)
    assert answer.status_code == 400 and "nope" in answer.json()["error"]["message"]


def test_chat_template_renders_tools_like_the_server(tiny_omni):
    """`apply_chat_template(..., tools=...)` gives the server's tool prompt, `tool_calls` and `tool` messages as
    Qwen2.5 renders them; without tools the template's output is unchanged (see tests/processing)."""
    from omni_hf.serving.tools import check_tools

    _, processor = tiny_omni
    messages = [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny"},
    ]  # fmt: skip
    prompt = processor.apply_chat_template(messages, tools=TOOLS)
    system = tools_system_prompt(processor.default_system_prompt, check_tools(TOOLS))
    assert prompt.startswith(f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\nweather?<|im_end|>\n")
    assert prompt.endswith(
        '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
        "<|im_end|>\n<|im_start|>user\n<tool_response>\nsunny\n</tool_response><|im_end|>\n"
    )
    plain = processor.apply_chat_template(messages[:1])
    assert (
        plain
        == f"<|im_start|>system\n{processor.default_system_prompt}<|im_end|>\n<|im_start|>user\nweather?<|im_end|>\n"
    )
